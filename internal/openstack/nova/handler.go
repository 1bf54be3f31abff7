package nova

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/strata-cloud/strata/internal/openstack/auth"
	"github.com/strata-cloud/strata/internal/openstack/neutron"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// ProjectIDs maps a namespace to its Keystone project's ID (the same
// contract as the Networking API's).
type ProjectIDs = neutron.ProjectIDs

// Config is what the Compute API needs.
type Config struct {
	// Client reads and writes the compute.strata.io objects and the
	// Volumes (storage.strata.io: attachments and boot from volume, in
	// every namespace to place a new one as Cinder would), and reads the
	// Images, the networking.strata.io objects, Pods, Nodes and
	// ResourceQuotas. Its scheme must have those kinds.
	Client client.Client
	// Authenticator, when set, authenticates every request but the version
	// documents by its X-Auth-Token. Unset, the requests must come through
	// an auth.Middleware already.
	Authenticator auth.Authenticator
	// Projects maps namespaces to project IDs, for a project path
	// (os-quota-sets/{project}) that is not the caller's own; nil: a
	// project's ID is its namespace's name.
	Projects ProjectIDs
	// Prefix the API is mounted at; empty: /compute. The version is
	// served at Prefix/v2.1.
	Prefix string
	// Logs returns the last tailLines lines (all for tailLines <= 0) of
	// the launcher pod's log: a server's console output. Nil: the console
	// output action answers 501.
	Logs func(ctx context.Context, namespace, pod string, tailLines int64) (string, error)
	// Exec runs command in container of pod and returns its standard
	// output (an error carries its standard error): how pause and unpause
	// reach a guest's QEMU. Nil: those actions answer 501.
	Exec func(ctx context.Context, namespace, pod, container string, command []string) (string, error)
}

type handler struct {
	cfg    Config
	c      client.Client
	prefix string
}

// Handler serves the Compute v2.1 API under cfg.Prefix.
func Handler(cfg Config) http.Handler {
	h := &handler{cfg: cfg, c: cfg.Client, prefix: strings.TrimSuffix(cfg.Prefix, "/")}
	if h.prefix == "" {
		h.prefix = "/compute"
	}
	api := http.NewServeMux()
	h.routes(api)
	var apiHandler http.Handler = api
	if cfg.Authenticator != nil {
		apiHandler = auth.Middleware(cfg.Authenticator, Unauthorized, api)
	}
	v21 := h.prefix + "/v2.1"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rid := "req-" + newUUID()
		w.Header().Set("X-Openstack-Request-Id", rid)
		w.Header().Set("X-Compute-Request-Id", rid)
		if p, ok := strings.CutSuffix(r.URL.Path, ".json"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = p, ""
			r = r2
		}
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case h.prefix:
			if r.Method == http.MethodGet {
				writeJSON(w, http.StatusOK, map[string]any{"versions": []any{versionDoc(h.base(r) + v21 + "/")}})
				return
			}
		case v21:
			if r.Method == http.MethodGet {
				doc := versionDoc(h.base(r) + v21 + "/")
				doc["media-types"] = []map[string]string{{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}}
				writeJSON(w, http.StatusOK, map[string]any{"version": doc})
				return
			}
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

type mvKey struct{}

func setVersionHeaders(w http.ResponseWriter, mv Microversion) {
	w.Header().Set("OpenStack-API-Version", "compute "+mv.String())
	w.Header().Set("X-OpenStack-Nova-API-Version", mv.String())
	w.Header().Add("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version")
}

func versionDoc(self string) map[string]any {
	return map[string]any{
		"id": "v2.1", "status": "CURRENT", "version": MaxVersion.String(), "min_version": MinVersion.String(),
		"updated": "2013-07-23T11:33:21Z",
		"links":   []map[string]string{{"rel": "self", "href": self}},
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
	snap  *snapshot
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
		if e := osapi.Gate(id, need, "Compute"); e != nil {
			writeError(w, e)
			return
		}
		rq := &request{ctx: r.Context(), r: r, id: id, ns: id.Namespace, mv: mv, admin: id.HasRole("admin"), h: h}
		// An admin acts on any project's server by its ID: when the
		// server is not the token project's, the call runs again as
		// the server's project (the body kept for it).
		var body []byte
		retry := rq.admin && r.PathValue("id") != ""
		if retry && r.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(r.Body, osapi.MaxBody))
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		code, out, err := fn(rq)
		if err != nil && retry && toError(err).Code == http.StatusNotFound {
			if sub, vm := h.adminServer(rq, r.PathValue("id")); vm != nil && sub.ns != rq.ns {
				r.Body = io.NopCloser(bytes.NewReader(body))
				code, out, err = fn(sub)
			}
		}
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, code, out)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) { osapi.WriteJSON(w, code, v) }

// Error is a Nova fault: its HTTP code and message.
type Error = osapi.Error

func writeError(w http.ResponseWriter, err error) { osapi.WriteFault(w, toError(err)) }

var (
	badRequest     = osapi.BadRequest
	notFound       = osapi.NotFound
	conflict       = osapi.Conflict
	forbidden      = osapi.Forbidden
	notImplemented = osapi.NotImplemented
	// toError maps an error of this package or of the Kubernetes API to
	// a Nova fault.
	toError = osapi.FromKube
	isStale = osapi.IsStale
)

// retryUpdate reads obj (key), applies mutate and writes it, again on a
// lost race.
func (h *handler) retryUpdate(ctx context.Context, obj client.Object, key types.NamespacedName, mutate func() error) error {
	return osapi.RetryUpdate(ctx, h.c, obj, key, mutate)
}

// base is the scheme and host the client reached us at.
func (h *handler) base(r *http.Request) string { return osapi.BaseURL(r) }

// url is the absolute URL of path under the v2.1 API.
func (rq *request) url(path string) string {
	return rq.h.base(rq.r) + rq.h.prefix + "/v2.1" + path
}

// bookmark is the link of path without the version.
func (rq *request) bookmark(path string) string {
	return rq.h.base(rq.r) + rq.h.prefix + path
}

func links(rq *request, path string) []map[string]string {
	return []map[string]string{{"rel": "self", "href": rq.url(path)}, {"rel": "bookmark", "href": rq.bookmark(path)}}
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
