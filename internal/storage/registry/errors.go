package registry

import (
	"encoding/json"
	"io"
	"net/http"
)

// Error codes of the OCI distribution spec (plus RANGE_INVALID, which the
// reference registry uses with 416).
const (
	codeBlobUnknown         = "BLOB_UNKNOWN"
	codeBlobUploadInvalid   = "BLOB_UPLOAD_INVALID"
	codeBlobUploadUnknown   = "BLOB_UPLOAD_UNKNOWN"
	codeDigestInvalid       = "DIGEST_INVALID"
	codeManifestBlobUnknown = "MANIFEST_BLOB_UNKNOWN"
	codeManifestInvalid     = "MANIFEST_INVALID"
	codeManifestUnknown     = "MANIFEST_UNKNOWN"
	codeNameInvalid         = "NAME_INVALID"
	codeNameUnknown         = "NAME_UNKNOWN"
	codeSizeInvalid         = "SIZE_INVALID"
	codeUnauthorized        = "UNAUTHORIZED"
	codeDenied              = "DENIED"
	codeUnsupported         = "UNSUPPORTED"
	codeRangeInvalid        = "RANGE_INVALID"
	codeUnknown             = "UNKNOWN"
)

// apiError is one entry of an OCI error response.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// errorBody is the OCI error response document.
type errorBody struct {
	Errors []apiError `json:"errors"`
}

// writeError sends an OCI error document with the given status.
func writeError(w http.ResponseWriter, status int, code, message string, detail any) {
	b, _ := json.Marshal(errorBody{Errors: []apiError{{Code: code, Message: message, Detail: detail}}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	h.Del("Docker-Content-Digest")
	w.WriteHeader(status)
	w.Write(b)
}

// rangeErrorWriter turns the plain-text 416 that http.ServeContent writes
// for an unsatisfiable range into an OCI error document.
type rangeErrorWriter struct {
	http.ResponseWriter
	swallow bool
}

func (w *rangeErrorWriter) WriteHeader(status int) {
	if status == http.StatusRequestedRangeNotSatisfiable {
		w.Header().Del("X-Content-Type-Options")
		writeError(w.ResponseWriter, status, codeRangeInvalid, "requested range not satisfiable", nil)
		w.swallow = true
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *rangeErrorWriter) Write(b []byte) (int, error) {
	if w.swallow {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps the underlying writer's fast path (sendfile on plain TCP).
func (w *rangeErrorWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.swallow {
		return io.Copy(io.Discard, r)
	}
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *rangeErrorWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
