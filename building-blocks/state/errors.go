package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	kiterrors "github.com/dapr/kit/errors"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Dapr's error codes of the state API (pkg/messages/errorcodes of daprd
// 1.18), with the reasons its rich errors carry.
const (
	codeStoreNotFound       = "ERR_STATE_STORE_NOT_FOUND"
	codeStoreNotConfigured  = "ERR_STATE_STORE_NOT_CONFIGURED"
	codeNotSupported        = "ERR_STATE_STORE_NOT_SUPPORTED"
	codeMalformedRequest    = "ERR_MALFORMED_REQUEST"
	codeGet                 = "ERR_STATE_GET"
	codeSave                = "ERR_STATE_SAVE"
	codeDelete              = "ERR_STATE_DELETE"
	codeBulkDelete          = "ERR_STATE_BULK_DELETE"
	codeBulkGet             = "ERR_STATE_BULK_GET"
	codeTransaction         = "ERR_STATE_TRANSACTION"
	codeNotSupportedOp      = "ERR_NOT_SUPPORTED_STATE_OPERATION"
	codeQuery               = "ERR_STATE_QUERY"
	reasonNotFound          = "DAPR_STATE_NOT_FOUND"
	reasonNotConfigured     = "DAPR_STATE_NOT_CONFIGURED"
	reasonTxNotSupported    = "DAPR_STATE_TRANSACTIONS_NOT_SUPPORTED"
	reasonQueryNotSupported = "DAPR_STATE_QUERYING_NOT_SUPPORTED"
	reasonQueryFailed       = "DAPR_STATE_QUERY_FAILED"
	reasonIllegalKey        = "DAPR_STATE_ILLEGAL_KEY"
	categoryState           = "state"
)

// Rich errors (dapr/kit/errors), built as daprd builds them: the same
// message, codes and details, so SDKs that read the details see the same.

func errStoreNotFound(store, appID string) error {
	var meta map[string]string
	if appID != "" {
		meta = map[string]string{"appID": appID}
	}
	return kiterrors.NewBuilder(codes.InvalidArgument, http.StatusBadRequest,
		fmt.Sprintf("state store %s is not found", store), codeStoreNotFound, categoryState).
		WithErrorInfo(reasonNotFound, meta).Build()
}

func errStoreNotConfigured(store, appID string) error {
	var meta map[string]string
	if appID != "" {
		meta = map[string]string{"appID": appID}
	}
	return kiterrors.NewBuilder(codes.FailedPrecondition, http.StatusInternalServerError,
		fmt.Sprintf("state store %s is not configured", store), codeStoreNotConfigured, categoryState).
		WithErrorInfo(reasonNotConfigured, meta).Build()
}

func errInvalidKey(store, key, msg string) error {
	return kiterrors.NewBuilder(codes.InvalidArgument, http.StatusBadRequest, msg, codeMalformedRequest, categoryState).
		WithFieldViolation(key, msg).
		WithResourceInfo("state", store, "", "").
		WithErrorInfo(reasonIllegalKey, nil).Build()
}

func errTransactionsNotSupported(store string) error {
	return kiterrors.NewBuilder(codes.Unimplemented, http.StatusInternalServerError,
		fmt.Sprintf("state store %s doesn't support transactions", store), codeNotSupported, categoryState).
		WithHelpLink("https://docs.dapr.io/reference/components-reference/supported-state-stores/", "Check the list of state stores and the features they support").
		WithResourceInfo("state", store, "", "").
		WithErrorInfo(reasonTxNotSupported, nil).Build()
}

func errQueryUnsupported(store string) error {
	return kiterrors.NewBuilder(codes.Internal, http.StatusInternalServerError,
		"state store does not support querying", codeNotSupported, categoryState).
		WithResourceInfo("state", store, "", "").
		WithErrorInfo(reasonQueryNotSupported, nil).Build()
}

func errQueryFailed(store, detail string) error {
	return kiterrors.NewBuilder(codes.Internal, http.StatusInternalServerError,
		fmt.Sprintf("state store %s query failed: %s", store, detail), codeQuery, categoryState).
		WithResourceInfo("state", store, "", "").
		WithErrorInfo(reasonQueryFailed, nil).Build()
}

// basic is daprd's apierrors.Basic: a rich error whose only detail is the
// error code as the ErrorInfo reason (the gRPC API's errors).
func basic(grpcCode codes.Code, httpCode int, code, msg string) error {
	return kiterrors.NewBuilder(grpcCode, httpCode, msg, "", categoryState).WithErrorInfo(code, nil).Build()
}

// legacyError is daprd's messages.APIError of the HTTP API: a status and
// {"errorCode":...,"message":...}.
type legacyError struct {
	status  int
	code    string
	message string
}

func (e *legacyError) Error() string { return e.message }

// GRPCStatus makes a legacyError usable on gRPC too.
func (e *legacyError) GRPCStatus() *status.Status {
	c := codes.Internal
	switch e.status {
	case http.StatusBadRequest:
		c = codes.InvalidArgument
	case http.StatusConflict:
		c = codes.Aborted
	}
	return status.New(c, e.message)
}

// writeError answers an HTTP request with err as daprd's respondWithError
// does.
func writeError(w http.ResponseWriter, err error) {
	var legacy *legacyError
	if errors.As(err, &legacy) {
		body, _ := json.Marshal(struct {
			ErrorCode string `json:"errorCode"`
			Message   string `json:"message"`
		}{legacy.code, legacy.message})
		writeJSON(w, legacy.status, body)
		return
	}
	if kerr, ok := kiterrors.FromError(err); ok {
		writeJSON(w, kerr.HTTPStatusCode(), kerr.JSONErrorValue())
		return
	}
	body, _ := json.Marshal(struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}{"ERR_INTERNAL", err.Error()})
	writeJSON(w, http.StatusInternalServerError, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// etagStatus is the HTTP status and gRPC code of a store's write error:
// 409 and ABORTED for an ETag mismatch, 400 and INVALID_ARGUMENT for an
// invalid ETag, 500 and INTERNAL otherwise.
func etagStatus(err error) (int, codes.Code) {
	switch {
	case errors.Is(err, ErrETagMismatch):
		return http.StatusConflict, codes.Aborted
	case errors.Is(err, ErrETagInvalid):
		return http.StatusBadRequest, codes.InvalidArgument
	}
	return http.StatusInternalServerError, codes.Internal
}
