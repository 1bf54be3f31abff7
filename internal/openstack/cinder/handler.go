package cinder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/strata-cloud/strata/internal/openstack/auth"
	"github.com/strata-cloud/strata/internal/openstack/neutron"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// ProjectIDs maps a namespace to its Keystone project's ID (the same
// contract as the Networking API's).
type ProjectIDs = neutron.ProjectIDs

// Config is what the Block Storage API needs.
type Config struct {
	// Client reads and writes Volumes and VolumeSnapshots
	// (storage.strata.io) and reads Images, Nodes, ResourceQuotas,
	// Namespaces and VirtualMachines (compute.strata.io, for attachments).
	// Its scheme must have those kinds.
	Client client.Client
	// Authenticator, when set, authenticates every request but the
	// version documents by its X-Auth-Token. Unset, the requests must come
	// through an auth.Middleware already.
	Authenticator auth.Authenticator
	// Projects maps namespaces to project IDs, for a quota path naming a
	// project that is not the caller's; nil: a project's ID is its
	// namespace's name.
	Projects ProjectIDs
	// Prefix the API is mounted at; empty: /volume. The API is served at
	// Prefix/v3.
	Prefix string
}

type handler struct {
	cfg    Config
	c      client.Client
	prefix string
}

// Handler serves the Block Storage v3 API under cfg.Prefix.
func Handler(cfg Config) http.Handler {
	h := &handler{cfg: cfg, c: cfg.Client, prefix: strings.TrimSuffix(cfg.Prefix, "/")}
	if h.prefix == "" {
		h.prefix = "/volume"
	}
	api := http.NewServeMux()
	h.routes(api)
	var apiHandler http.Handler = h.projectPath(api)
	if cfg.Authenticator != nil {
		apiHandler = auth.Middleware(cfg.Authenticator, Unauthorized, apiHandler)
	}
	v3 := h.prefix + "/v3"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Openstack-Request-Id", "req-"+newUUID())
		path := strings.TrimSuffix(r.URL.Path, "/")
		switch {
		case path == h.prefix && r.Method == http.MethodGet:
			// Cinder's root lists its versions with 300 Multiple Choices.
			writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": []any{versionDoc(h.base(r) + v3 + "/")}})
			return
		case path == v3 && r.Method == http.MethodGet:
			writeJSON(w, http.StatusOK, map[string]any{"versions": []any{versionDoc(h.base(r) + v3 + "/")}})
			return
		}
		if rest, ok := strings.CutPrefix(path, v3+"/"); ok && r.Method == http.MethodGet && !strings.Contains(rest, "/") && !collections[rest] {
			// The catalog's URL itself (…/v3/{project_id}): what version
			// discovery reads first.
			writeJSON(w, http.StatusOK, map[string]any{"versions": []any{versionDoc(h.base(r) + v3 + "/")}})
			return
		}
		mv, err := Negotiate(r.Header)
		setVersionHeaders(w, mv)
		if err != nil {
			writeError(w, err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), mvKey{}, mv))
		apiHandler.ServeHTTP(w, r)
	})
}

// collections are the first path segments after /v3 of Cinder's
// resources: any other first segment is a project ID.
var collections = map[string]bool{
	"volumes": true, "snapshots": true, "types": true, "limits": true, "os-quota-sets": true,
	"os-quota-class-sets": true, "os-availability-zone": true, "extensions": true, "os-services": true,
	"attachments": true, "backups": true, "qos-specs": true, "os-volume-transfer": true,
	"volume-transfers": true, "groups": true, "group_types": true, "group_snapshots": true,
	"messages": true, "scheduler-stats": true, "capabilities": true, "os-hosts": true,
	"manageable_volumes": true, "manageable_snapshots": true, "workers": true, "clusters": true,
	"resource_filters": true, "default-types": true, "os-snapshot-manage": true, "os-volume-manage": true,
}

// projectPath checks the project of a /v3/{project_id}/... path against
// the caller's and strips it, so the routes are the project-less form.
func (h *handler) projectPath(next http.Handler) http.Handler {
	v3 := h.prefix + "/v3/"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, v3)
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		first, after, _ := strings.Cut(rest, "/")
		if collections[first] {
			next.ServeHTTP(w, r)
			return
		}
		id, _ := auth.FromContext(r.Context())
		if first == "" || (first != id.ProjectID && first != id.Namespace) {
			// Cinder refuses a URL whose project is not the token's.
			writeError(w, badRequest("Malformed request url"))
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = v3+after, ""
		next.ServeHTTP(w, r2)
	})
}

type mvKey struct{}

func setVersionHeaders(w http.ResponseWriter, mv Microversion) {
	w.Header().Set("OpenStack-API-Version", "volume "+mv.String())
	w.Header().Add("Vary", "OpenStack-API-Version")
}

func versionDoc(self string) map[string]any {
	return map[string]any{
		"id": "v3.0", "status": "CURRENT", "version": MaxVersion.String(), "min_version": MinVersion.String(),
		"updated": "2023-08-31T00:00:00Z",
		"links": []map[string]string{
			{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
			{"rel": "self", "href": self},
		},
		"media-types": []map[string]string{{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}},
	}
}

// Unauthorized writes Keystone's 401, for an auth.Middleware.
func Unauthorized(w http.ResponseWriter, r *http.Request) { osapi.Unauthorized(w, r) }

// request is one API call with its caller.
type request struct {
	ctx   context.Context
	r     *http.Request
	id    auth.Identity
	ns    string
	mv    Microversion
	admin bool
	h     *handler
}

// body decodes {"<key>": {...}} into out.
func (rq *request) body(key string, out any) error { return osapi.Body(rq.r, key, out) }

// rawBody decodes the whole body as a JSON object.
func (rq *request) rawBody() (map[string]json.RawMessage, error) { return osapi.RawBody(rq.r) }

// access is what a call needs of its caller.
type access = osapi.Access

const (
	readAccess  = osapi.Read
	writeAccess = osapi.Write
	adminAccess = osapi.Admin
)

// serve runs fn for an authenticated, project-scoped caller.
func (h *handler) serve(need access, fn func(*request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.FromContext(r.Context())
		if !ok {
			Unauthorized(w, r)
			return
		}
		mv, _ := r.Context().Value(mvKey{}).(Microversion)
		if mv == (Microversion{}) {
			mv = MinVersion
		}
		if e := osapi.Gate(id, need, "Block Storage"); e != nil {
			writeError(w, e)
			return
		}
		rq := &request{ctx: r.Context(), r: r, id: id, ns: id.Namespace, mv: mv, admin: id.HasRole("admin"), h: h}
		code, out, err := fn(rq)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, code, out)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) { osapi.WriteJSON(w, code, v) }

// Error is a Cinder fault: its HTTP code and message.
type Error = osapi.Error

// FaultName is the key Cinder wraps an error body of that code in.
func FaultName(code int) string { return osapi.FaultName(code) }

func writeError(w http.ResponseWriter, err error) { osapi.WriteFault(w, ToError(err)) }

var (
	badRequest     = osapi.BadRequest
	notFound       = osapi.NotFound
	forbidden      = osapi.Forbidden
	notImplemented = osapi.NotImplemented
	isStale        = osapi.IsStale
)

// ToError maps an error of this package or of the Kubernetes API to a
// Cinder fault. StrataVolumeIntegrity's refusals become what Cinder says
// for the same cases: a 409 on deleting (attached, has snapshots, backs a
// bound claim) is 400 "Invalid volume", a 422 on spec.size (smaller than
// its source, shrinking) is 400 "Invalid input received"; a quota refusal
// is 413 overLimit.
func ToError(err error) *Error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		st := se.Status()
		msg := st.Message
		switch {
		case apierrors.IsConflict(err) && !isStale(err):
			if d := st.Details; d != nil && d.Group == "storage.strata.io" {
				return &Error{Code: http.StatusBadRequest, Message: "Invalid volume: " + admissionReason(msg)}
			}
		case apierrors.IsInvalid(err):
			if d := st.Details; d != nil && len(d.Causes) > 0 {
				var parts []string
				for _, c := range d.Causes {
					if c.Field != "" {
						parts = append(parts, c.Field+": "+c.Message)
					} else {
						parts = append(parts, c.Message)
					}
				}
				msg = strings.Join(parts, "; ")
			}
			return &Error{Code: http.StatusBadRequest, Message: "Invalid input received: " + msg}
		case osapi.IsQuota(err):
			return &Error{Code: http.StatusRequestEntityTooLarge, Message: "VolumeLimitExceeded: " + msg}
		}
	}
	return osapi.FromKube(err)
}

// admissionReason is the admission plugin's own sentence out of an API
// conflict message ("Operation cannot be fulfilled on volumes… "x": REASON").
func admissionReason(msg string) string {
	if i := strings.Index(msg, "\": "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// retryUpdate reads obj (key), applies mutate and writes it, again on a
// lost race.
func (h *handler) retryUpdate(ctx context.Context, obj client.Object, key types.NamespacedName, mutate func() error) error {
	return osapi.RetryUpdate(ctx, h.c, obj, key, mutate)
}

// base is the scheme and host the client reached us at.
func (h *handler) base(r *http.Request) string { return osapi.BaseURL(r) }

// Links are the URL bases of a project's resources.
type Links struct {
	// Self is …/v3/{project_id}, Bookmark …/{project_id} (no version).
	Self, Bookmark string
}

func (l Links) of(path string) []map[string]string {
	return []map[string]string{{"rel": "self", "href": l.Self + path}, {"rel": "bookmark", "href": l.Bookmark + path}}
}

func (rq *request) links() Links {
	b := rq.h.base(rq.r) + rq.h.prefix
	return Links{Self: b + "/v3/" + rq.id.ProjectID, Bookmark: b + "/" + rq.id.ProjectID}
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// parseBool reads Cinder's booleans: JSON true/false or the strings
// true/false/yes/no/1/0/on/off.
func parseBool(raw json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true", "yes", "1", "on", "t", "y":
			return true, nil
		case "false", "no", "0", "off", "f", "n":
			return false, nil
		}
	}
	return false, fmt.Errorf("%s is not a boolean", string(raw))
}

// parseInt reads a JSON integer, or a string of one (as Cinder accepts).
func parseInt(raw json.RawMessage) (int64, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err == nil {
		if v, err := strconv.ParseInt(n.String(), 10, 64); err == nil {
			return v, nil
		}
		if f, err := n.Float64(); err == nil && f == float64(int64(f)) {
			return int64(f), nil
		}
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s is not an integer", string(raw))
}

// action is the one action an action request's body names, and its
// argument.
func (rq *request) action() (string, json.RawMessage, error) {
	outer, err := rq.rawBody()
	if err != nil {
		return "", nil, err
	}
	if len(outer) != 1 {
		return "", nil, badRequest("There is either no action or more than one action in the request body.")
	}
	for name, arg := range outer {
		return name, arg, nil
	}
	return "", nil, nil
}

// deleteOnce deletes obj, this very object (its UID), unless it is being
// deleted already: 202; gone meanwhile is kind's 404.
func (h *handler) deleteOnce(rq *request, obj client.Object, kind string) (int, any, error) {
	if obj.GetDeletionTimestamp() != nil {
		return http.StatusAccepted, nil, nil
	}
	uid := obj.GetUID()
	if err := h.c.Delete(rq.ctx, obj, client.Preconditions{UID: &uid}); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil, notFound("%s %s could not be found.", kind, rq.r.PathValue("id"))
		}
		return 0, nil, err
	}
	return http.StatusAccepted, nil, nil
}
