package proxy

import (
	"encoding/json"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
)

// Dapr error codes used by this package, as daprd spells them.
const (
	errCodeDirectInvoke              = "ERR_DIRECT_INVOKE"
	errCodeSecretStoresNotConfigured = "ERR_SECRET_STORES_NOT_CONFIGURED"
	errCodeStateStoreNotConfigured   = "ERR_STATE_STORE_NOT_CONFIGURED"
	errCodePubSubNotConfigured       = "ERR_PUBSUB_NOT_CONFIGURED"
	errCodeHealthNotReady            = "ERR_HEALTH_NOT_READY"
	errCodeOutboundNotReady          = "ERR_OUTBOUND_HEALTH_NOT_READY"
	errCodeHealthAppIDMismatch       = "ERR_HEALTH_APPID_NOT_MATCH"
	errCodeMalformedRequest          = "ERR_MALFORMED_REQUEST"
	errCodeNotFound                  = "ERR_NOT_FOUND"
	errCodeMetadataSet               = "ERR_METADATA_SET"
)

// apiError is an error in Dapr's JSON shape: {"errorCode":...,"message":...}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e apiError) Error() string { return e.message }

// writeError writes e as daprd does.
func writeError(w http.ResponseWriter, e apiError) {
	body, _ := json.Marshal(struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}{e.code, e.message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	_, _ = w.Write(body)
}

func directInvokeError(appID string, err error) apiError {
	return apiError{http.StatusInternalServerError, errCodeDirectInvoke, "failed to invoke, id: " + appID + ", err: " + err.Error()}
}

// grpcCodeFromHTTP maps an app's HTTP status to the gRPC code a gRPC caller
// of InvokeService sees, as daprd does.
func grpcCodeFromHTTP(status int) codes.Code {
	switch {
	case status >= 200 && status < 300:
		return codes.OK
	case status == http.StatusBadRequest:
		return codes.InvalidArgument
	case status == http.StatusUnauthorized:
		return codes.Unauthenticated
	case status == http.StatusForbidden:
		return codes.PermissionDenied
	case status == http.StatusNotFound:
		return codes.NotFound
	case status == http.StatusConflict:
		return codes.Aborted
	case status == http.StatusPreconditionFailed:
		return codes.FailedPrecondition
	case status == http.StatusRequestedRangeNotSatisfiable:
		return codes.OutOfRange
	case status == http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case status == http.StatusNotImplemented:
		return codes.Unimplemented
	case status == http.StatusServiceUnavailable:
		return codes.Unavailable
	case status == http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case status == 499:
		return codes.Canceled
	case status >= 500:
		return codes.Internal
	}
	return codes.Unknown
}

// httpStatusFromGRPC maps a gRPC app's status to the HTTP status an HTTP
// caller sees, as daprd does.
func httpStatusFromGRPC(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}
