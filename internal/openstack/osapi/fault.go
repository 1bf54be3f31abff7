package osapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Error is a fault: its HTTP code and message.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Errorf makes a fault of code.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{code, fmt.Sprintf(format, args...)}
}

// BadRequest is a 400 fault.
func BadRequest(format string, args ...any) *Error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// NotFound is a 404 fault.
func NotFound(format string, args ...any) *Error { return Errorf(http.StatusNotFound, format, args...) }

// Conflict is a 409 fault.
func Conflict(format string, args ...any) *Error { return Errorf(http.StatusConflict, format, args...) }

// Forbidden is a 403 fault.
func Forbidden(format string, args ...any) *Error {
	return Errorf(http.StatusForbidden, format, args...)
}

// NotImplemented is a 501 fault.
func NotImplemented(format string, args ...any) *Error {
	return Errorf(http.StatusNotImplemented, format, args...)
}

// FaultName is the key a fault body of that code is wrapped in.
func FaultName(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "badRequest"
	case http.StatusUnauthorized:
		return "unauthorized"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "itemNotFound"
	case http.StatusMethodNotAllowed:
		return "badMethod"
	case http.StatusConflict:
		return "conflictingRequest"
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return "overLimit"
	case http.StatusUnsupportedMediaType:
		return "badMediaType"
	case http.StatusNotImplemented:
		return "notImplemented"
	case http.StatusServiceUnavailable:
		return "serviceUnavailable"
	}
	return "computeFault"
}

// WriteFault writes e as a fault body.
func WriteFault(w http.ResponseWriter, e *Error) {
	WriteJSON(w, e.Code, map[string]any{FaultName(e.Code): map[string]any{"code": e.Code, "message": e.Message}})
}

// WriteJSON writes v with code; a nil v writes no body.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	if v == nil {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Unauthorized writes Keystone's 401, for an auth.Middleware.
func Unauthorized(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("WWW-Authenticate", "Keystone uri=\"\"")
	WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
		"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
}

// FromKube maps an *Error (returned as is) or a refusal of the Kubernetes
// API to a fault: not found 404, exists or conflict 409, invalid 400,
// forbidden 403 (a quota's "Quota exceeded: …"), other API codes as they
// are; anything else is a 500.
func FromKube(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return &Error{http.StatusInternalServerError, err.Error()}
	}
	st := se.Status()
	msg := st.Message
	switch {
	case apierrors.IsNotFound(err):
		return &Error{http.StatusNotFound, msg}
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return &Error{http.StatusConflict, msg}
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return &Error{http.StatusBadRequest, msg}
	case apierrors.IsForbidden(err):
		if IsQuota(err) {
			return &Error{http.StatusForbidden, "Quota exceeded: " + msg}
		}
		return &Error{http.StatusForbidden, msg}
	}
	code := int(st.Code)
	if code < 400 {
		code = http.StatusInternalServerError
	}
	return &Error{code, msg}
}

// IsQuota is the ResourceQuota admission's refusal.
func IsQuota(err error) bool {
	return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota")
}
