package secrets

import (
	"encoding/json"
	"fmt"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Dapr error codes of the secrets API, as daprd 1.18 spells them
// (pkg/messages/errorcodes).
const (
	codeStoresNotConfigured = "ERR_SECRET_STORES_NOT_CONFIGURED"
	codeStoreNotFound       = "ERR_SECRET_STORE_NOT_FOUND"
	codePermissionDenied    = "ERR_PERMISSION_DENIED"
	codeSecretGet           = "ERR_SECRET_GET"
	codeMalformedRequest    = "ERR_MALFORMED_REQUEST"
	codeBodyRead            = "ERR_BODY_READ"
)

// apiError is one of daprd's API errors: an HTTP status with a JSON body
// {"errorCode":...,"message":...}, and a gRPC status with the same message.
// It implements GRPCStatus, so a gRPC server sends its code and message.
type apiError struct {
	httpStatus int
	grpcCode   codes.Code
	code       string
	message    string
}

func (e *apiError) Error() string { return e.message }

// GRPCStatus returns the status daprd sends: the code and the message, no
// details.
func (e *apiError) GRPCStatus() *status.Status { return status.New(e.grpcCode, e.message) }

// write answers an HTTP request with e, as daprd's respondWithError does:
// the JSON body without a trailing newline.
func (e *apiError) write(w http.ResponseWriter) {
	body, _ := json.Marshal(struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}{e.code, e.message})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.httpStatus)
	_, _ = w.Write(body)
}

// The errors of pkg/messages/predefined.go, with daprd's texts, HTTP
// statuses and gRPC codes.

func errStoresNotConfigured() *apiError {
	return &apiError{http.StatusInternalServerError, codes.FailedPrecondition, codeStoresNotConfigured,
		"secret store is not configured"}
}

// Dapr quirk: an unknown store is 401 Unauthorized on HTTP.
func errStoreNotFound(store string) *apiError {
	return &apiError{http.StatusUnauthorized, codes.InvalidArgument, codeStoreNotFound,
		"failed finding secret store with key " + store}
}

func errPermissionDenied(key, store string) *apiError {
	return &apiError{http.StatusForbidden, codes.PermissionDenied, codePermissionDenied,
		fmt.Sprintf("access denied by policy to get %q from %q", key, store)}
}

func errSecretGet(key, store string, err error) *apiError {
	return &apiError{http.StatusInternalServerError, codes.Internal, codeSecretGet,
		fmt.Sprintf("failed getting secret with key %s from secret store %s: %s", key, store, err)}
}

func errBulkSecretGet(store string, err error) *apiError {
	return &apiError{http.StatusInternalServerError, codes.Internal, codeSecretGet,
		fmt.Sprintf("failed getting secrets from secret store %s: %v", store, err)}
}

func errMalformedRequest(err error) *apiError {
	return &apiError{http.StatusBadRequest, codes.InvalidArgument, codeMalformedRequest,
		fmt.Sprintf("failed deserializing HTTP body: %v", err)}
}

func errBodyRead(err error) *apiError {
	return &apiError{http.StatusBadRequest, codes.InvalidArgument, codeBodyRead,
		fmt.Sprintf("failed to read request body: %v", err)}
}
