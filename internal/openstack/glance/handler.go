package glance

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// ProjectIDs maps a namespace to the ID of its Keystone project, for the
// owner of images.
type ProjectIDs interface {
	ProjectID(ctx context.Context, namespace string) (string, error)
}

// NamespaceNames is the default ProjectIDs: a project's ID is its
// namespace's name, as Strata's Keystone has it.
type NamespaceNames struct{}

// ProjectID returns namespace.
func (NamespaceNames) ProjectID(_ context.Context, namespace string) (string, error) {
	return namespace, nil
}

// Config is what the Glance API needs.
type Config struct {
	// Client reads and writes Images (storage.strata.io), status
	// included; its scheme must have the storage kinds.
	Client client.Client
	// Store holds the images' bytes: the server's registry. Without it,
	// uploads and downloads answer 503 (the rest works).
	Store Store
	// Authenticator, when set, authenticates every request but the version
	// documents by its X-Auth-Token. Unset, the requests must come through
	// an auth.Middleware already.
	Authenticator auth.Authenticator
	// Projects maps namespaces to project IDs; nil: NamespaceNames.
	Projects ProjectIDs
	// Prefix the API is mounted at (whole paths are routed); empty: /image.
	Prefix string
	// MaxImageBytes limits an upload's size (413 past it); 0: no limit.
	MaxImageBytes int64
	// Log, when set, records failed uploads and internal errors.
	Log *slog.Logger
	// Instance names this server process (NewInstance) in the status of
	// the images it is uploading, for RecoverUploads after a crash.
	Instance string
}

type handler struct {
	c        client.Client
	store    Store
	projects ProjectIDs
	prefix   string
	max      int64
	log      *slog.Logger
	instance string
}

// Handler serves the Image v2 API under cfg.Prefix (the whole path is
// routed: mount it with the prefix kept).
func Handler(cfg Config) http.Handler {
	h := &handler{c: cfg.Client, store: cfg.Store, projects: cfg.Projects, prefix: strings.TrimSuffix(cfg.Prefix, "/"), max: cfg.MaxImageBytes, log: cfg.Log, instance: cfg.Instance}
	if h.instance == "" {
		h.instance = NewInstance()
	}
	if h.projects == nil {
		h.projects = NamespaceNames{}
	}
	if h.prefix == "" {
		h.prefix = "/image"
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	api := http.NewServeMux()
	v2 := h.prefix + "/v2"
	api.HandleFunc("GET "+v2+"/images", h.serve(false, h.list))
	api.HandleFunc("POST "+v2+"/images", h.serve(true, h.create))
	api.HandleFunc("GET "+v2+"/images/{id}", h.serve(false, h.show))
	api.HandleFunc("PATCH "+v2+"/images/{id}", h.serve(true, h.patch))
	api.HandleFunc("DELETE "+v2+"/images/{id}", h.serve(true, h.delete))
	api.HandleFunc("PUT "+v2+"/images/{id}/file", h.serve(true, h.upload))
	api.HandleFunc("GET "+v2+"/images/{id}/file", h.serve(false, h.download))
	api.HandleFunc("PUT "+v2+"/images/{id}/tags/{tag}", h.serve(true, h.addTag))
	api.HandleFunc("DELETE "+v2+"/images/{id}/tags/{tag}", h.serve(true, h.deleteTag))
	api.HandleFunc("POST "+v2+"/images/{id}/import", h.serve(true, h.importImage))
	api.HandleFunc("POST "+v2+"/images/{id}/actions/deactivate", h.serve(true, h.deactivate(true)))
	api.HandleFunc("POST "+v2+"/images/{id}/actions/reactivate", h.serve(true, h.deactivate(false)))
	api.HandleFunc("GET "+v2+"/images/{id}/members", h.serve(false, h.members))
	api.HandleFunc("POST "+v2+"/images/{id}/members", h.serve(true, h.addMember))
	api.HandleFunc("GET "+v2+"/info/import", h.serve(false, func(w http.ResponseWriter, _ *request) error {
		writeJSON(w, http.StatusOK, map[string]any{"import-methods": map[string]any{
			"description": "Import methods available.", "type": "array", "value": []string{"web-download"}}})
		return nil
	}))
	api.HandleFunc("GET "+v2+"/info/stores", h.serve(false, func(w http.ResponseWriter, _ *request) error {
		writeJSON(w, http.StatusOK, map[string]any{"stores": []any{map[string]any{
			"id": "strata", "description": "Strata's OCI registry", "default": true}}})
		return nil
	}))
	api.HandleFunc("GET "+v2+"/schemas/{name}", func(w http.ResponseWriter, r *http.Request) {
		s, ok := schemas()[r.PathValue("name")]
		if !ok {
			writeError(w, r, errorf(http.StatusNotFound, "The resource could not be found."))
			return
		}
		writeJSON(w, http.StatusOK, s)
	})
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errorf(http.StatusNotFound, "The resource could not be found."))
	})

	var apiHandler http.Handler = api
	if cfg.Authenticator != nil {
		apiHandler = auth.Middleware(cfg.Authenticator, Unauthorized, api)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Openstack-Request-Id", "req-"+string(uuid.NewUUID()))
		switch p := strings.TrimSuffix(r.URL.Path, "/"); {
		case r.Method == http.MethodGet && (p == h.prefix || p == "" || p == h.prefix+"/versions" || p == v2):
			code := http.StatusOK
			if p != h.prefix+"/versions" {
				code = http.StatusMultipleChoices // as Glance answers its root
			}
			writeJSON(w, code, map[string]any{"versions": h.versions(r)})
			return
		case strings.HasPrefix(p, v2+"/schemas/"):
			api.ServeHTTP(w, r) // schemas are public, as in Glance
			return
		}
		apiHandler.ServeHTTP(w, r)
	})
}

// Unauthorized writes the 401 of Glance's token middleware, for an
// auth.Middleware.
func Unauthorized(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("WWW-Authenticate", "Keystone uri=''")
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
		"code": http.StatusUnauthorized, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
}

// request is one API call with its caller.
type request struct {
	ctx   context.Context
	r     *http.Request
	id    auth.Identity
	ns    string
	owner string // the caller's project ID
	admin bool
	h     *handler
	cache map[string]string
}

// serve runs fn for an authenticated caller with a project; writes need
// the member role.
func (h *handler) serve(write bool, fn func(http.ResponseWriter, *request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.FromContext(r.Context())
		if !ok {
			Unauthorized(w, r)
			return
		}
		if id.Namespace == "" {
			writeError(w, r, errorf(http.StatusForbidden, "The Image API needs a project-scoped token."))
			return
		}
		if !id.HasRole("reader") || write && !id.HasRole("member") {
			writeError(w, r, errorf(http.StatusForbidden, "You are not authorized to complete this action: it needs the member role."))
			return
		}
		owner := id.ProjectID
		if owner == "" {
			owner = id.Namespace
		}
		rq := &request{ctx: r.Context(), r: r, id: id, ns: id.Namespace, owner: owner, admin: id.HasRole("admin"), h: h, cache: map[string]string{}}
		if err := fn(w, rq); err != nil {
			e := h.toError(err)
			if e.Code >= 500 {
				h.log.Error("glance", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeError(w, r, e)
		}
	}
}

// project is the project ID owning namespace ns.
func (rq *request) project(ns string) string {
	if ns == rq.ns {
		return rq.owner
	}
	if id, ok := rq.cache[ns]; ok {
		return id
	}
	id, err := rq.h.projects.ProjectID(rq.ctx, ns)
	if err != nil {
		id = ""
	}
	rq.cache[ns] = id
	return id
}

// visible says whether the caller may see img: its project's, or public
// or community ones.
func (rq *request) visible(img *storagev1.Image) bool {
	if img.Namespace == rq.ns {
		return true
	}
	switch img.Annotations[AnnotationVisibility] {
	case "public", "community":
		return true
	}
	return false
}

// all lists every Image of the cluster.
func (rq *request) all() ([]storagev1.Image, error) {
	var l storagev1.ImageList
	if err := rq.h.c.List(rq.ctx, &l); err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return l.Items, nil
}

// find returns the image id that the caller may see; 404 otherwise.
func (rq *request) find(id string) (*storagev1.Image, error) {
	imgs, err := rq.all()
	if err != nil {
		return nil, err
	}
	for i := range imgs {
		if ID(&imgs[i]) == id && rq.visible(&imgs[i]) {
			return &imgs[i], nil
		}
	}
	return nil, errorf(http.StatusNotFound, "No image found with ID %s", id)
}

// own returns the image id of the caller's project: 403 for one it only
// sees, 404 for one it does not.
func (rq *request) own(id string) (*storagev1.Image, error) {
	img, err := rq.find(id)
	if err != nil {
		return nil, err
	}
	if img.Namespace != rq.ns {
		return nil, errorf(http.StatusForbidden, "You are not permitted to modify image %s: it belongs to another project.", id)
	}
	return img, nil
}

// update reads img again, applies mutate and writes it, again on a lost
// race.
func (rq *request) update(img *storagev1.Image, mutate func(*storagev1.Image) error) error {
	key := types.NamespacedName{Namespace: img.Namespace, Name: img.Name}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := rq.h.c.Get(rq.ctx, key, img); err != nil {
			return err
		}
		if err := mutate(img); err != nil {
			return err
		}
		return rq.h.c.Update(rq.ctx, img)
	})
}

// setStatus reads img again and writes its status as change makes it,
// again on a lost race.
func (rq *request) setStatus(img *storagev1.Image, change func(*storagev1.ImageStatus)) error {
	key := types.NamespacedName{Namespace: img.Namespace, Name: img.Name}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := rq.h.c.Get(rq.ctx, key, img); err != nil {
			return err
		}
		change(&img.Status)
		return rq.h.c.Status().Update(rq.ctx, img)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes e as Glance's WSGI stack does: a small HTML page, or
// JSON with code, title and message when the client accepts JSON only.
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	title := http.StatusText(e.Code)
	status := fmt.Sprintf("%d %s", e.Code, title)
	accept := r.Header.Get("Accept")
	if strings.Contains(accept, "application/json") && !strings.Contains(accept, "text/html") {
		writeJSON(w, e.Code, map[string]any{"code": status, "title": title, "message": e.Message})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(e.Code)
	fmt.Fprintf(w, "<html>\n <head>\n  <title>%s</title>\n </head>\n <body>\n  <h1>%s</h1>\n  %s<br /><br />\n </body>\n</html>", status, status, html.EscapeString(e.Message))
}

// toError maps an error of this package or of the Kubernetes API to
// Glance's code.
func (h *handler) toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return errorf(http.StatusInternalServerError, "%v", err)
	}
	msg := se.Status().Message
	// "Operation cannot be fulfilled on images.x "name": <why>": keep why.
	if rest, ok := strings.CutPrefix(msg, "Operation cannot be fulfilled on "); ok {
		if i := strings.Index(rest, "\": "); i >= 0 {
			msg = rest[i+3:]
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		return errorf(http.StatusNotFound, "The image could not be found.")
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		return errorf(http.StatusConflict, "%s", msg)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		return errorf(http.StatusBadRequest, "%s", msg)
	case apierrors.IsForbidden(err):
		return errorf(http.StatusForbidden, "%s", msg)
	}
	code := int(se.Status().Code)
	if code < 400 {
		code = http.StatusInternalServerError
	}
	return errorf(code, "%s", msg)
}

// baseURL is the scheme and host the client reached us at.
var baseURL = osapi.BaseURL

// versions is Glance's version list: every 2.x minor version at the one
// v2 endpoint, the newest CURRENT.
func (h *handler) versions(r *http.Request) []any {
	href := baseURL(r) + h.prefix + "/v2/"
	var out []any
	for minor := 16; minor >= 0; minor-- {
		status := "SUPPORTED"
		if minor == 16 {
			status = "CURRENT"
		}
		out = append(out, map[string]any{
			"id": fmt.Sprintf("v2.%d", minor), "status": status,
			"links": []map[string]string{{"rel": "self", "href": href}},
		})
	}
	return out
}
