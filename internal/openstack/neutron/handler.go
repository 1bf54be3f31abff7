package neutron

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// ProjectIDs maps a namespace to the ID of its Keystone project, for the
// project_id of objects outside the caller's own namespace (external
// networks).
type ProjectIDs = osapi.ProjectIDs

// NamespaceUIDs is the default ProjectIDs: a project's ID is its
// namespace's UID.
type NamespaceUIDs struct{ Reader client.Reader }

// ProjectID returns namespace's UID.
func (n NamespaceUIDs) ProjectID(ctx context.Context, namespace string) (string, error) {
	ns := &corev1.Namespace{}
	if err := n.Reader.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
		return "", fmt.Errorf("get namespace %s: %w", namespace, err)
	}
	return string(ns.UID), nil
}

// Config is what the Neutron API needs.
type Config struct {
	// Client reads and writes the networking.strata.io objects (and reads
	// Namespaces and VirtualMachines). Its scheme must have the networking
	// and compute kinds.
	Client client.Client
	// Authenticator, when set, authenticates every request but the version
	// documents by its X-Auth-Token. Unset, the requests must come through
	// an auth.Middleware already.
	Authenticator auth.Authenticator
	// Projects maps namespaces to project IDs; nil: NamespaceUIDs.
	Projects ProjectIDs
	// Prefix the API is mounted at; empty: /network.
	Prefix string
	// AllocationWait bounds how long a port or floating IP create waits
	// for its addresses (the controllers allocate them), which Neutron's
	// answer carries; zero: no wait.
	AllocationWait time.Duration
}

type handler struct {
	c              client.Client
	projects       ProjectIDs
	prefix         string
	allocationWait time.Duration
}

// Handler serves the Neutron v2.0 API under cfg.Prefix.
func Handler(cfg Config) http.Handler {
	h := &handler{c: cfg.Client, projects: cfg.Projects, prefix: strings.TrimSuffix(cfg.Prefix, "/"), allocationWait: cfg.AllocationWait}
	if h.projects == nil {
		h.projects = NamespaceUIDs{Reader: cfg.Client}
	}
	if h.prefix == "" {
		h.prefix = "/network"
	}
	api := http.NewServeMux()
	v2 := h.prefix + "/v2.0"
	for _, c := range h.collections() {
		c := c
		api.HandleFunc("GET "+v2+"/"+c.plural, h.serve(false, func(rq *request) (int, any, error) { return h.list(rq, c) }))
		api.HandleFunc("GET "+v2+"/"+c.plural+"/{id}", h.serve(false, func(rq *request) (int, any, error) { return h.show(rq, c) }))
		if c.create != nil {
			api.HandleFunc("POST "+v2+"/"+c.plural, h.serve(true, func(rq *request) (int, any, error) {
				body, err := rq.body(c.singular)
				if err != nil {
					return 0, nil, err
				}
				out, err := c.create(rq, body)
				return http.StatusCreated, map[string]any{c.singular: out}, err
			}))
		}
		if c.update != nil {
			api.HandleFunc("PUT "+v2+"/"+c.plural+"/{id}", h.serve(true, func(rq *request) (int, any, error) {
				body, err := rq.body(c.singular)
				if err != nil {
					return 0, nil, err
				}
				out, err := c.update(rq, rq.r.PathValue("id"), body)
				return http.StatusOK, map[string]any{c.singular: out}, err
			}))
		}
		api.HandleFunc("DELETE "+v2+"/"+c.plural+"/{id}", h.serve(true, func(rq *request) (int, any, error) {
			return http.StatusNoContent, nil, c.del(rq, rq.r.PathValue("id"))
		}))
	}
	api.HandleFunc("PUT "+v2+"/routers/{id}/add_router_interface", h.serve(true, func(rq *request) (int, any, error) {
		out, err := h.routerInterface(rq, rq.r.PathValue("id"), true)
		return http.StatusOK, out, err
	}))
	api.HandleFunc("PUT "+v2+"/routers/{id}/remove_router_interface", h.serve(true, func(rq *request) (int, any, error) {
		out, err := h.routerInterface(rq, rq.r.PathValue("id"), false)
		return http.StatusOK, out, err
	}))
	api.HandleFunc("GET "+v2+"/quotas", h.serve(false, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"quotas": []any{quota(rq.id.ProjectID)}}, nil
	}))
	api.HandleFunc("GET "+v2+"/quotas/{project}", h.serve(false, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"quota": quota(rq.r.PathValue("project"))}, nil
	}))
	api.HandleFunc("GET "+v2+"/quotas/{project}/details", h.serve(false, func(rq *request) (int, any, error) {
		return http.StatusOK, map[string]any{"quota": quotaDetails()}, nil
	}))
	api.HandleFunc("GET "+v2+"/extensions", h.serve(false, func(*request) (int, any, error) {
		return http.StatusOK, map[string]any{"extensions": extensions}, nil
	}))
	api.HandleFunc("GET "+v2+"/extensions/{alias}", h.serve(false, func(rq *request) (int, any, error) {
		for _, e := range extensions {
			if e["alias"] == rq.r.PathValue("alias") {
				return http.StatusOK, map[string]any{"extension": e}, nil
			}
		}
		return 0, nil, notFound("HTTPNotFound", "Extension with alias %s does not exist", rq.r.PathValue("alias"))
	}))
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("HTTPNotFound", "The resource could not be found."))
	})

	var apiHandler http.Handler = api
	if cfg.Authenticator != nil {
		apiHandler = auth.Middleware(cfg.Authenticator, Unauthorized, api)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Older clients append .json to paths.
		if p, ok := strings.CutSuffix(r.URL.Path, ".json"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path, r2.URL.RawPath = p, ""
			r = r2
		}
		switch strings.TrimSuffix(r.URL.Path, "/") {
		case h.prefix:
			if r.Method == http.MethodGet {
				h.versions(w, r)
				return
			}
		case v2:
			if r.Method == http.MethodGet {
				h.version(w, r)
				return
			}
		}
		apiHandler.ServeHTTP(w, r)
	})
}

// Unauthorized writes Neutron's 401, for an auth.Middleware.
func Unauthorized(w http.ResponseWriter, _ *http.Request) {
	writeError(w, &Error{http.StatusUnauthorized, "HTTPUnauthorized", "The request you have made requires authentication."})
}

// request is one API call with its caller and what it may see.
type request struct {
	ctx      context.Context
	r        *http.Request
	id       auth.Identity
	ns       string
	h        *handler
	snap     *snapshot
	projects map[string]string
}

// body decodes {"<singular>": {...}} and returns the inner object.
func (rq *request) body(singular string) (json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(rq.r.Body, 1<<20))
	if err != nil {
		return nil, badRequest("read the body: %v", err)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(b, &outer); err != nil {
		return nil, badRequest("Malformed request body: %v", err)
	}
	inner, ok := outer[singular]
	if !ok || string(inner) == "null" {
		return nil, badRequest("Resource body required: %q", singular)
	}
	return inner, nil
}

// decode decodes a resource body into req.
func decode(body json.RawMessage, req any) error {
	if err := json.Unmarshal(body, req); err != nil {
		return badRequest("Malformed request body: %v", err)
	}
	return nil
}

// project is the project ID of namespace ns.
func (rq *request) project(ns string) string {
	if ns == rq.ns {
		return rq.id.ProjectID
	}
	if id, ok := rq.projects[ns]; ok {
		return id
	}
	id, err := rq.h.projects.ProjectID(rq.ctx, ns)
	if err != nil {
		id = "" // an unknown project shows as none rather than failing the list
	}
	rq.projects[ns] = id
	return id
}

// serve runs fn for an authenticated caller with a project; write calls
// need the member role.
func (h *handler) serve(write bool, fn func(*request) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := auth.FromContext(r.Context())
		if !ok {
			Unauthorized(w, r)
			return
		}
		if id.Namespace == "" {
			writeError(w, &Error{http.StatusForbidden, "PolicyNotAuthorized", "The Networking API needs a project-scoped token."})
			return
		}
		if write && !id.HasRole("member") {
			writeError(w, &Error{http.StatusForbidden, "PolicyNotAuthorized", "This operation is not allowed by policy: it needs the member role."})
			return
		}
		rq := &request{ctx: r.Context(), r: r, id: id, ns: id.Namespace, h: h, projects: map[string]string{}}
		snap, err := h.load(rq.ctx, rq.ns)
		if err != nil {
			writeError(w, toNeutronError(err, "HTTPNotFound"))
			return
		}
		rq.snap = snap
		code, out, err := fn(rq)
		if err != nil {
			writeError(w, toNeutronError(err, "HTTPNotFound"))
			return
		}
		writeJSON(w, code, out)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	if code == http.StatusNoContent || v == nil {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *Error) {
	writeJSON(w, e.Code, map[string]any{"NeutronError": map[string]string{"type": e.Type, "message": e.Message, "detail": ""}})
}

// toNeutronError maps an error of this package or of the Kubernetes API to
// Neutron's code and type; notFoundType is the type of a 404.
func toNeutronError(err error, notFoundType string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return &Error{http.StatusInternalServerError, "HTTPInternalServerError", err.Error()}
	}
	st := se.Status()
	msg := st.Message
	// "Operation cannot be fulfilled on subnets.x "name": <why>": keep why.
	if rest, ok := strings.CutPrefix(msg, "Operation cannot be fulfilled on "); ok {
		if i := strings.Index(rest, "\": "); i >= 0 {
			msg = rest[i+3:]
		}
	}
	switch {
	case apierrors.IsNotFound(err):
		if st.Details != nil { // the object itself, not an admission verdict
			msg = "The resource could not be found."
		}
		return &Error{http.StatusNotFound, notFoundType, msg}
	case apierrors.IsAlreadyExists(err):
		return &Error{http.StatusConflict, "Conflict", msg}
	case apierrors.IsConflict(err):
		return &Error{http.StatusConflict, conflictType(msg), msg}
	case apierrors.IsInvalid(err):
		if st.Details != nil && len(st.Details.Causes) > 0 {
			var parts []string
			for _, c := range st.Details.Causes {
				parts = append(parts, fmt.Sprintf("Invalid input for %s: %s", c.Field, c.Message))
			}
			msg = strings.Join(parts, "; ")
		}
		return &Error{http.StatusBadRequest, "HTTPBadRequest", msg}
	case apierrors.IsBadRequest(err):
		return &Error{http.StatusBadRequest, "HTTPBadRequest", msg}
	case apierrors.IsForbidden(err):
		return &Error{http.StatusForbidden, "PolicyNotAuthorized", msg}
	}
	code := int(st.Code)
	if code < 400 {
		code = http.StatusInternalServerError
	}
	return &Error{code, "HTTPInternalServerError", msg}
}

// conflictType names a 409 the way Neutron does, from the admission
// plugin's messages.
func conflictType(msg string) string {
	switch {
	case strings.Contains(msg, "already allocated"):
		return "IpAddressAlreadyAllocated"
	case strings.Contains(msg, "One or more ports have an IP allocation"):
		return "SubnetInUse"
	case strings.Contains(msg, "already attached to router"):
		return "SubnetInUseByRouter"
	}
	return "Conflict"
}

// isStale is a write that lost a race with another: read and try again.
var isStale = osapi.IsStale

// snapshot is every object a request may see, and their IDs.
type snapshot struct {
	networks []netv1.Network // the namespace's and external ones of others
	subnets  []netv1.Subnet  // the namespace's
	ports    []netv1.Port
	routers  []netv1.Router
	fips     []netv1.FloatingIP
	groups   []netv1.SecurityGroup
	ix       *Index
}

func (h *handler) load(ctx context.Context, ns string) (*snapshot, error) {
	o, err := h.fetch(ctx, ns)
	if err != nil {
		return nil, err
	}
	return o.snapshot(ns), nil
}

// objects are the lists snapshots are made of: networks and subnets of
// every namespace, the other kinds of one namespace or (fetched for "")
// of all.
type objects struct {
	nets    netv1.NetworkList
	subnets netv1.SubnetList
	ports   netv1.PortList
	routers netv1.RouterList
	fips    netv1.FloatingIPList
	groups  netv1.SecurityGroupList
	vms     computev1.VirtualMachineList
}

// fetch lists what the snapshots of namespace ns, or of every namespace
// for "", are made of.
func (h *handler) fetch(ctx context.Context, ns string) (*objects, error) {
	o := &objects{}
	for _, l := range []client.ObjectList{&o.nets, &o.subnets} {
		if err := h.c.List(ctx, l); err != nil {
			return nil, fmt.Errorf("list %T: %w", l, err)
		}
	}
	var opts []client.ListOption
	if ns != "" {
		opts = append(opts, client.InNamespace(ns))
	}
	for _, l := range []client.ObjectList{&o.ports, &o.routers, &o.fips, &o.groups} {
		if err := h.c.List(ctx, l, opts...); err != nil {
			return nil, fmt.Errorf("list %T: %w", l, err)
		}
	}
	switch err := h.c.List(ctx, &o.vms, opts...); {
	case runtime.IsNotRegisteredError(err) || meta.IsNoMatchError(err):
		// No compute kinds: ports' device_id stays the VM's name.
	case err != nil:
		return nil, fmt.Errorf("list virtual machines: %w", err)
	}
	return o, nil
}

// snapshot is what namespace ns sees of o.
func (o *objects) snapshot(ns string) *snapshot {
	s := &snapshot{ix: NewIndex()}
	external := map[[2]string]bool{}
	for _, n := range o.nets.Items {
		if n.Namespace == ns || n.Spec.External {
			s.networks = append(s.networks, n)
			s.ix.Add(kindNetwork, n.Namespace, n.Name, string(n.UID))
			external[[2]string{n.Namespace, n.Name}] = n.Spec.External
		}
	}
	for i := range o.subnets.Items {
		sn := &o.subnets.Items[i]
		if sn.Namespace == ns {
			s.subnets = append(s.subnets, *sn)
		}
		// External networks' subnets are not shown, but name router
		// gateways' and floating IPs' addresses.
		if sn.Namespace == ns || external[[2]string{sn.Namespace, sn.Spec.Network}] {
			s.ix.addSubnet(sn)
		}
	}
	s.ports = inNamespace(o.ports.Items, ns)
	s.routers = inNamespace(o.routers.Items, ns)
	s.fips = inNamespace(o.fips.Items, ns)
	s.groups = inNamespace(o.groups.Items, ns)
	for _, o := range s.ports {
		s.ix.Add(kindPort, o.Namespace, o.Name, string(o.UID))
	}
	for _, o := range s.routers {
		s.ix.Add(kindRouter, o.Namespace, o.Name, string(o.UID))
	}
	for _, o := range s.fips {
		s.ix.Add(kindFloatingIP, o.Namespace, o.Name, string(o.UID))
	}
	for _, o := range s.groups {
		s.ix.Add(kindSecurityGroup, o.Namespace, o.Name, string(o.UID))
	}
	for _, o := range inNamespace(o.vms.Items, ns) {
		s.ix.Add(kindVM, o.Namespace, o.Name, string(o.UID))
	}
	return s
}

// inNamespace are the items of namespace ns.
func inNamespace[T any, P interface {
	*T
	GetNamespace() string
}](items []T, ns string) []T {
	var out []T
	for i := range items {
		if P(&items[i]).GetNamespace() == ns {
			out = append(out, items[i])
		}
	}
	return out
}

// retryUpdate reads obj (key), applies mutate and writes it, again on a
// lost race.
func (h *handler) retryUpdate(ctx context.Context, obj client.Object, key types.NamespacedName, mutate func() error) error {
	return osapi.RetryUpdate(ctx, h.c, obj, key, mutate)
}

func quota(projectID string) map[string]any {
	return map[string]any{
		"project_id": projectID, "tenant_id": projectID,
		"network": -1, "subnet": -1, "port": -1, "router": -1, "floatingip": -1,
		"security_group": -1, "security_group_rule": -1, "subnetpool": -1, "rbac_policy": -1,
	}
}

func quotaDetails() map[string]any {
	out := map[string]any{}
	for _, k := range []string{"network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule"} {
		out[k] = map[string]int{"limit": -1, "used": 0, "reserved": 0}
	}
	return out
}

// extensions are the API extensions this implementation serves.
var extensions = []map[string]string{
	ext("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway."),
	ext("external-net", "Neutron external network", "Adds external network attribute to network resource."),
	ext("ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway"),
	ext("security-group", "security-group", "The security groups extension."),
	ext("port-security", "Port Security", "Provides port security"),
	ext("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
	ext("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
	ext("quotas", "Quota management support", "Expose functions for quotas management per project"),
	ext("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
	ext("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
	ext("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
	ext("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
	ext("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
	ext("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
}

func ext(alias, name, desc string) map[string]string {
	return map[string]string{"alias": alias, "name": name, "description": desc, "updated": "2026-01-01T00:00:00-00:00", "links": ""}
}

// baseURL is the scheme and host the client reached us at.
var baseURL = osapi.BaseURL

func (h *handler) versionDoc(r *http.Request) map[string]any {
	return map[string]any{
		"id": "v2.0", "status": "CURRENT",
		"links": []map[string]string{{"rel": "self", "href": baseURL(r) + h.prefix + "/v2.0/"}},
	}
}

func (h *handler) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{h.versionDoc(r)}})
}

func (h *handler) version(w http.ResponseWriter, r *http.Request) {
	var res []map[string]any
	for _, c := range h.collections() {
		res = append(res, map[string]any{"name": c.singular, "collection": c.plural,
			"links": []map[string]string{{"rel": "self", "href": baseURL(r) + h.prefix + "/v2.0/" + c.plural}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resources": res})
}
