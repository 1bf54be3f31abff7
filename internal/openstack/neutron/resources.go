package neutron

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// collection is one Neutron resource type and what serves it.
type collection struct {
	plural, singular string
	kind             string // the kind an ID names; "" for rules
	notFound, what   string // Neutron's 404 type, and the resource in messages
	list             func(*request) []any
	create           func(*request, json.RawMessage) (any, error)
	update           func(*request, string, json.RawMessage) (any, error)
	del              func(*request, string) error
}

// key is the collection's JSON key (security_groups for security-groups).
func (c collection) key() string { return strings.ReplaceAll(c.plural, "-", "_") }

func (h *handler) collections() []collection {
	return []collection{
		{plural: "networks", singular: "network", kind: kindNetwork, notFound: "NetworkNotFound", what: "Network",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.networks {
					n := &rq.snap.networks[i]
					out = append(out, NetworkToNeutron(n, rq.snap.ix, rq.project(n.Namespace)))
				}
				return out
			},
			create: h.createNetwork, update: h.updateNetwork, del: h.deleteNetwork},
		{plural: "subnets", singular: "subnet", kind: kindSubnet, notFound: "SubnetNotFound", what: "Subnet",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.subnets {
					out = append(out, SubnetToNeutron(&rq.snap.subnets[i], rq.snap.ix, rq.id.ProjectID))
				}
				return out
			},
			create: h.createSubnet, update: h.updateSubnet, del: h.deleter(kindSubnet, "SubnetNotFound", "Subnet", func() client.Object { return &netv1.Subnet{} })},
		{plural: "ports", singular: "port", kind: kindPort, notFound: "PortNotFound", what: "Port",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.ports {
					out = append(out, PortToNeutron(&rq.snap.ports[i], rq.snap.ix, rq.id.ProjectID))
				}
				for _, p := range rq.routerPorts() {
					out = append(out, p)
				}
				return out
			},
			create: h.createPort, update: h.updatePort, del: h.deleter(kindPort, "PortNotFound", "Port", func() client.Object { return &netv1.Port{} })},
		{plural: "routers", singular: "router", kind: kindRouter, notFound: "RouterNotFound", what: "Router",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.routers {
					out = append(out, RouterToNeutron(&rq.snap.routers[i], rq.snap.ix, rq.id.ProjectID))
				}
				return out
			},
			create: h.createRouter, update: h.updateRouter, del: h.deleteRouter},
		{plural: "floatingips", singular: "floatingip", kind: kindFloatingIP, notFound: "FloatingIPNotFound", what: "Floating IP",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.fips {
					out = append(out, FloatingIPToNeutron(&rq.snap.fips[i], rq.snap.ix, rq.id.ProjectID))
				}
				return out
			},
			create: h.createFloatingIP, update: h.updateFloatingIP, del: h.deleter(kindFloatingIP, "FloatingIPNotFound", "Floating IP", func() client.Object { return &netv1.FloatingIP{} })},
		{plural: "security-groups", singular: "security_group", kind: kindSecurityGroup, notFound: "SecurityGroupNotFound", what: "Security group",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.groups {
					out = append(out, SecurityGroupToNeutron(&rq.snap.groups[i], rq.snap.ix, rq.id.ProjectID))
				}
				return out
			},
			create: h.createSecurityGroup, update: h.updateSecurityGroup, del: h.deleteSecurityGroup},
		{plural: "security-group-rules", singular: "security_group_rule", notFound: "SecurityGroupRuleNotFound", what: "Security group rule",
			list: func(rq *request) []any {
				var out []any
				for i := range rq.snap.groups {
					for _, r := range SecurityGroupToNeutron(&rq.snap.groups[i], rq.snap.ix, rq.id.ProjectID).Rules {
						out = append(out, r)
					}
				}
				return out
			},
			create: h.createRule, del: h.deleteRule},
	}
}

// toMaps turns translated resources into JSON objects, for filters and fields.
func toMaps(items []any) ([]map[string]any, error) {
	b, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Query parameters that are not filters.
var reserved = map[string]bool{"fields": true, "limit": true, "marker": true, "sort_key": true, "sort_dir": true, "page_reverse": true}

// matches reports whether item's field has one of the wanted values; a
// list field matches when it holds one.
func matches(v any, want []string) bool {
	if m, ok := v.(map[string]any); ok {
		// fixed_ips=ip_address=10.0.0.5, as the CLI's port list --fixed-ip.
		return slices.ContainsFunc(want, func(w string) bool {
			k, val, ok := strings.Cut(w, "=")
			return ok && strings.EqualFold(scalar(m[k]), val)
		})
	}
	if l, ok := v.([]any); ok {
		return slices.ContainsFunc(l, func(e any) bool { return matches(e, want) })
	}
	s := scalar(v)
	return slices.ContainsFunc(want, func(w string) bool { return strings.EqualFold(w, s) })
}

func scalar(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func (h *handler) list(rq *request, c collection) (int, any, error) {
	listed, err := h.listed(rq, c)
	if err != nil {
		return 0, nil, err
	}
	items, err := toMaps(listed)
	if err != nil {
		return 0, nil, err
	}
	// An admin's list spans projects: a shared object (an external
	// network) shows once.
	seen := map[any]bool{}
	items = slices.DeleteFunc(items, func(it map[string]any) bool {
		id, ok := it["id"]
		if !ok {
			return false
		}
		dup := seen[id]
		seen[id] = true
		return dup
	})
	q := rq.r.URL.Query()
	for k, want := range q {
		if reserved[k] {
			continue
		}
		items = slices.DeleteFunc(items, func(it map[string]any) bool {
			v, ok := it[k]
			return !ok || !matches(v, want)
		})
	}
	keys, dirs := q["sort_key"], q["sort_dir"]
	keys = append(keys, "id")
	sort.SliceStable(items, func(i, j int) bool {
		for n, k := range keys {
			a, b := scalar(items[i][k]), scalar(items[j][k])
			if a == b {
				continue
			}
			if n < len(dirs) && dirs[n] == "desc" {
				return a > b
			}
			return a < b
		}
		return false
	})
	out := map[string]any{}
	if limit, _ := strconv.Atoi(q.Get("limit")); limit > 0 || q.Get("marker") != "" {
		start := 0
		if m := q.Get("marker"); m != "" {
			i := slices.IndexFunc(items, func(it map[string]any) bool { return it["id"] == m })
			if i < 0 {
				return 0, nil, notFound(c.notFound, "Marker %s could not be found.", m)
			}
			start = i + 1
		}
		end := len(items)
		if limit > 0 && start+limit < end {
			end = start + limit
		}
		var links []map[string]string
		if end < len(items) && end > start {
			links = append(links, map[string]string{"rel": "next", "href": pageURL(rq.r, items[end-1]["id"])})
		}
		if q.Get("marker") != "" && end > start {
			links = append(links, map[string]string{"rel": "previous", "href": pageURL(rq.r, items[start]["id"]) + "&page_reverse=True"})
		}
		items = items[start:end]
		if links != nil {
			out[c.key()+"_links"] = links
		}
	}
	for _, it := range items {
		selectFields(it, q["fields"])
	}
	if items == nil {
		items = []map[string]any{}
	}
	out[c.key()] = items
	return http.StatusOK, out, nil
}

// pageURL is this list's URL starting after marker.
func pageURL(r *http.Request, marker any) string {
	q := r.URL.Query()
	q.Set("marker", scalar(marker))
	q.Del("page_reverse")
	return baseURL(r) + r.URL.Path + "?" + q.Encode()
}

func selectFields(it map[string]any, fields []string) {
	if len(fields) == 0 {
		return
	}
	for k := range it {
		if !slices.Contains(fields, k) {
			delete(it, k)
		}
	}
}

func (h *handler) show(rq *request, c collection) (int, any, error) {
	items, err := toMaps(c.list(rq))
	if err != nil {
		return 0, nil, err
	}
	id := rq.r.PathValue("id")
	for _, it := range items {
		if it["id"] == id {
			selectFields(it, rq.r.URL.Query()["fields"])
			return http.StatusOK, map[string]any{c.singular: it}, nil
		}
	}
	return 0, nil, notFound(c.notFound, "%s %s could not be found.", c.what, id)
}

// own resolves id to an object of kind in the caller's namespace. Another
// project's object is not found; an external network of another project
// is visible but not the caller's to change.
func (rq *request) own(kind, id, notFoundType, what string) (ref, error) {
	r, ok := rq.snap.ix.Lookup(kind, id)
	if !ok || (r.Namespace != rq.ns && kind != kindNetwork) {
		return ref{}, notFound(notFoundType, "%s %s could not be found.", what, id)
	}
	if r.Namespace != rq.ns {
		return ref{}, &Error{http.StatusForbidden, "PolicyNotAuthorized", fmt.Sprintf("Network %s belongs to another project.", id)}
	}
	return r, nil
}

func (r ref) key() types.NamespacedName {
	return types.NamespacedName{Namespace: r.Namespace, Name: r.Name}
}

// newName is the Kubernetes name of a new object of kind with Neutron
// name (see KubeName).
func (rq *request) newName(kind, prefix, name string) string {
	return KubeName(name, prefix, string(uuid.NewUUID())[:8], func(n string) bool {
		return rq.snap.ix.ID(kind, rq.ns, n) != ""
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// create names obj after its Neutron name and creates it.
func (h *handler) create(rq *request, obj client.Object, kind, prefix string, name *string) error {
	obj.SetNamespace(rq.ns)
	if kind != kindFloatingIP {
		setAnnotation(obj, AnnotationName, deref(name))
	}
	obj.SetName(rq.newName(kind, prefix, deref(name)))
	if err := h.c.Create(rq.ctx, obj); err != nil {
		return err
	}
	rq.snap.ix.Add(kind, obj.GetNamespace(), obj.GetName(), string(obj.GetUID()))
	return nil
}

// awaitAllocation re-reads obj, just created, until allocated() (its
// controller has given it its addresses, which Neutron answers a create
// with) or h.allocationWait has passed; the answer then shows what there
// is.
func (h *handler) awaitAllocation(rq *request, obj client.Object, allocated func() bool) {
	if h.allocationWait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(rq.ctx, h.allocationWait)
	defer cancel()
	key := client.ObjectKeyFromObject(obj)
	for !allocated() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
		if err := h.c.Get(ctx, key, obj); err != nil {
			return
		}
	}
}

func (h *handler) deleter(kind, notFoundType, what string, newObj func() client.Object) func(*request, string) error {
	return func(rq *request, id string) error {
		r, err := rq.own(kind, id, notFoundType, what)
		if err != nil {
			return err
		}
		obj := newObj()
		obj.SetNamespace(r.Namespace)
		obj.SetName(r.Name)
		return notFoundAs(h.c.Delete(rq.ctx, obj), notFoundType)
	}
}

// notFoundAs gives a Kubernetes 404 Neutron's type for the resource.
func notFoundAs(err error, typ string) error {
	if err == nil {
		return nil
	}
	return toNeutronError(err, typ)
}

func (h *handler) createNetwork(rq *request, body json.RawMessage) (any, error) {
	var req NetworkRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := rq.adminOnly(req); err != nil {
		return nil, err
	}
	n := &netv1.Network{}
	if err := ApplyNetwork(n, req, true); err != nil {
		return nil, err
	}
	if err := h.create(rq, n, kindNetwork, "net", req.Name); err != nil {
		return nil, err
	}
	return NetworkToNeutron(n, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updateNetwork(rq *request, id string, body json.RawMessage) (any, error) {
	var req NetworkRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindNetwork, id, "NetworkNotFound", "Network")
	if err != nil {
		return nil, err
	}
	if err := rq.adminOnly(req); err != nil {
		return nil, err
	}
	n := &netv1.Network{}
	if err := h.retryUpdate(rq.ctx, n, r.key(), func() error { return ApplyNetwork(n, req, false) }); err != nil {
		return nil, notFoundAs(err, "NetworkNotFound")
	}
	return NetworkToNeutron(n, rq.snap.ix, rq.id.ProjectID), nil
}

// deleteNetwork deletes a network and its subnets, as Neutron does, unless
// ports are on it.
func (h *handler) deleteNetwork(rq *request, id string) error {
	r, err := rq.own(kindNetwork, id, "NetworkNotFound", "Network")
	if err != nil {
		return err
	}
	for _, p := range rq.snap.ports {
		if p.Spec.Network == r.Name && p.DeletionTimestamp == nil {
			return &Error{http.StatusConflict, "NetworkInUse", fmt.Sprintf("Unable to complete operation on network %s. There are one or more ports still in use on the network.", id)}
		}
	}
	for i := range rq.snap.subnets {
		sn := &rq.snap.subnets[i]
		if sn.Spec.Network == r.Name {
			if err := client.IgnoreNotFound(h.c.Delete(rq.ctx, sn)); err != nil {
				return toNeutronError(err, "SubnetNotFound")
			}
		}
	}
	n := &netv1.Network{}
	n.Namespace, n.Name = r.Namespace, r.Name
	return notFoundAs(h.c.Delete(rq.ctx, n), "NetworkNotFound")
}

func (h *handler) createSubnet(rq *request, body json.RawMessage) (any, error) {
	var req SubnetRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	sn := &netv1.Subnet{}
	if err := ApplySubnet(sn, req, rq.ns, rq.snap.ix, true); err != nil {
		return nil, err
	}
	if err := h.create(rq, sn, kindSubnet, "subnet", req.Name); err != nil {
		return nil, err
	}
	rq.snap.ix.addSubnet(sn)
	return SubnetToNeutron(sn, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updateSubnet(rq *request, id string, body json.RawMessage) (any, error) {
	var req SubnetRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindSubnet, id, "SubnetNotFound", "Subnet")
	if err != nil {
		return nil, err
	}
	sn := &netv1.Subnet{}
	if err := h.retryUpdate(rq.ctx, sn, r.key(), func() error { return ApplySubnet(sn, req, rq.ns, rq.snap.ix, false) }); err != nil {
		return nil, notFoundAs(err, "SubnetNotFound")
	}
	return SubnetToNeutron(sn, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) createPort(rq *request, body json.RawMessage) (any, error) {
	var req PortRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	p := &netv1.Port{}
	if err := ApplyPort(p, req, rq.ns, rq.snap.ix, true); err != nil {
		return nil, err
	}
	if err := h.create(rq, p, kindPort, "port", req.Name); err != nil {
		return nil, err
	}
	h.awaitAllocation(rq, p, func() bool { return len(p.Status.FixedIPs) > 0 })
	return PortToNeutron(p, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updatePort(rq *request, id string, body json.RawMessage) (any, error) {
	var req PortRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindPort, id, "PortNotFound", "Port")
	if err != nil {
		return nil, err
	}
	p := &netv1.Port{}
	if err := h.retryUpdate(rq.ctx, p, r.key(), func() error { return ApplyPort(p, req, rq.ns, rq.snap.ix, false) }); err != nil {
		return nil, notFoundAs(err, "PortNotFound")
	}
	return PortToNeutron(p, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) createRouter(rq *request, body json.RawMessage) (any, error) {
	var req RouterRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	rt := &netv1.Router{}
	if err := ApplyRouter(rt, req, rq.ns, rq.snap.ix); err != nil {
		return nil, err
	}
	if err := h.create(rq, rt, kindRouter, "router", req.Name); err != nil {
		return nil, err
	}
	return RouterToNeutron(rt, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updateRouter(rq *request, id string, body json.RawMessage) (any, error) {
	var req RouterRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindRouter, id, "RouterNotFound", "Router")
	if err != nil {
		return nil, err
	}
	rt := &netv1.Router{}
	if err := h.retryUpdate(rq.ctx, rt, r.key(), func() error { return ApplyRouter(rt, req, rq.ns, rq.snap.ix) }); err != nil {
		return nil, notFoundAs(err, "RouterNotFound")
	}
	return RouterToNeutron(rt, rq.snap.ix, rq.id.ProjectID), nil
}

// deleteRouter refuses, as Neutron does, a router that still has
// interfaces.
func (h *handler) deleteRouter(rq *request, id string) error {
	r, err := rq.own(kindRouter, id, "RouterNotFound", "Router")
	if err != nil {
		return err
	}
	for _, rt := range rq.snap.routers {
		if rt.Name == r.Name && len(rt.Spec.Interfaces) > 0 {
			return &Error{http.StatusConflict, "RouterInUse", fmt.Sprintf("Router %s still has ports", id)}
		}
	}
	rt := &netv1.Router{}
	rt.Namespace, rt.Name = r.Namespace, r.Name
	return notFoundAs(h.c.Delete(rq.ctx, rt), "RouterNotFound")
}

// routerInterface adds (or removes) the router's interface on a subnet,
// named by subnet_id or by a port_id on it. Strata's router takes the
// subnet's gateway address either way.
func (h *handler) routerInterface(rq *request, id string, add bool) (any, error) {
	var req InterfaceRequest
	b, err := readAll(rq.r)
	if err != nil {
		return nil, err
	}
	if err := decode(b, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindRouter, id, "RouterNotFound", "Router")
	if err != nil {
		return nil, err
	}
	if (req.SubnetID == "") == (req.PortID == "") {
		return nil, badRequest("Bad router request: Either subnet_id or port_id must be specified")
	}
	var subnet ref
	if req.SubnetID != "" {
		if subnet, err = rq.own(kindSubnet, req.SubnetID, "SubnetNotFound", "Subnet"); err != nil {
			return nil, err
		}
	} else if rp := slices.IndexFunc(rq.routerPorts(), func(p Port) bool { return p.ID == req.PortID && p.DeviceID == id }); rp >= 0 {
		subnet, _ = rq.snap.ix.Lookup(kindSubnet, rq.routerPorts()[rp].FixedIPs[0].SubnetID)
	} else {
		pr, err := rq.own(kindPort, req.PortID, "PortNotFound", "Port")
		if err != nil {
			return nil, err
		}
		for i := range rq.snap.ports {
			if p := &rq.snap.ports[i]; p.Name == pr.Name {
				if fixed := PortToNeutron(p, rq.snap.ix, "").FixedIPs; len(fixed) > 0 {
					subnet, _ = rq.snap.ix.Lookup(kindSubnet, fixed[0].SubnetID)
				}
			}
		}
		if subnet.Name == "" {
			return nil, badRequest("Bad router request: Router port must have at least one fixed IP")
		}
	}
	rt := &netv1.Router{}
	err = h.retryUpdate(rq.ctx, rt, r.key(), func() error {
		i := slices.IndexFunc(rt.Spec.Interfaces, func(in netv1.RouterInterface) bool { return in.Subnet == subnet.Name })
		switch {
		case add && i >= 0:
			return badRequest("Bad router request: Router already has a port on subnet %s.", rq.snap.ix.ID(kindSubnet, rq.ns, subnet.Name))
		case add:
			rt.Spec.Interfaces = append(rt.Spec.Interfaces, netv1.RouterInterface{Subnet: subnet.Name})
		case i < 0:
			return notFound("RouterInterfaceNotFoundForSubnet", "Router %s has no interface on subnet %s", id, rq.snap.ix.ID(kindSubnet, rq.ns, subnet.Name))
		default:
			rt.Spec.Interfaces = slices.Delete(rt.Spec.Interfaces, i, i+1)
		}
		return nil
	})
	if err != nil {
		return nil, notFoundAs(err, "RouterNotFound")
	}
	subnetID := rq.snap.ix.ID(kindSubnet, rq.ns, subnet.Name)
	var network string
	for _, sn := range rq.snap.subnets {
		if sn.Name == subnet.Name {
			network = rq.snap.ix.ID(kindNetwork, rq.ns, sn.Spec.Network)
		}
	}
	portID := req.PortID
	if portID == "" {
		portID = routerPortID(id, subnetID)
	}
	return InterfaceInfo{ID: id, SubnetID: subnetID, SubnetIDs: []string{subnetID}, PortID: portID,
		NetworkID: network, ProjectID: rq.id.ProjectID, TenantID: rq.id.ProjectID}, nil
}

func readAll(r *http.Request) (json.RawMessage, error) {
	var b json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil {
		return nil, badRequest("Malformed request body: %v", err)
	}
	return b, nil
}

func (h *handler) createFloatingIP(rq *request, body json.RawMessage) (any, error) {
	var req FloatingIPRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	f := &netv1.FloatingIP{}
	if err := ApplyFloatingIP(f, req, rq.ns, rq.snap.ix, true); err != nil {
		return nil, err
	}
	if err := h.create(rq, f, kindFloatingIP, "fip", nil); err != nil {
		return nil, err
	}
	h.awaitAllocation(rq, f, func() bool { return f.Status.FloatingIPAddress != "" })
	return FloatingIPToNeutron(f, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updateFloatingIP(rq *request, id string, body json.RawMessage) (any, error) {
	var req FloatingIPRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindFloatingIP, id, "FloatingIPNotFound", "Floating IP")
	if err != nil {
		return nil, err
	}
	f := &netv1.FloatingIP{}
	if err := h.retryUpdate(rq.ctx, f, r.key(), func() error { return ApplyFloatingIP(f, req, rq.ns, rq.snap.ix, false) }); err != nil {
		return nil, notFoundAs(err, "FloatingIPNotFound")
	}
	return FloatingIPToNeutron(f, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) createSecurityGroup(rq *request, body json.RawMessage) (any, error) {
	var req SecurityGroupRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	g := &netv1.SecurityGroup{}
	if err := ApplySecurityGroup(g, req); err != nil {
		return nil, err
	}
	// Neutron's new groups let everything out.
	g.Spec.Rules = []netv1.SecurityGroupRule{{ID: string(uuid.NewUUID()), Direction: "egress", Ethertype: "IPv4", Protocol: "any"}}
	if err := h.create(rq, g, kindSecurityGroup, "sg", req.Name); err != nil {
		return nil, err
	}
	return SecurityGroupToNeutron(g, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) updateSecurityGroup(rq *request, id string, body json.RawMessage) (any, error) {
	var req SecurityGroupRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	r, err := rq.own(kindSecurityGroup, id, "SecurityGroupNotFound", "Security group")
	if err != nil {
		return nil, err
	}
	g := &netv1.SecurityGroup{}
	if err := h.retryUpdate(rq.ctx, g, r.key(), func() error { return ApplySecurityGroup(g, req) }); err != nil {
		return nil, notFoundAs(err, "SecurityGroupNotFound")
	}
	return SecurityGroupToNeutron(g, rq.snap.ix, rq.id.ProjectID), nil
}

// deleteSecurityGroup refuses the default group and a group ports use.
func (h *handler) deleteSecurityGroup(rq *request, id string) error {
	r, err := rq.own(kindSecurityGroup, id, "SecurityGroupNotFound", "Security group")
	if err != nil {
		return err
	}
	if r.Name == netv1.DefaultSecurityGroup {
		return &Error{http.StatusConflict, "SecurityGroupCannotRemoveDefault", "Removing default security group not allowed."}
	}
	for _, p := range rq.snap.ports {
		if slices.Contains(p.Spec.SecurityGroups, r.Name) {
			return &Error{http.StatusConflict, "SecurityGroupInUse", fmt.Sprintf("Security Group %s in use.", id)}
		}
	}
	g := &netv1.SecurityGroup{}
	g.Namespace, g.Name = r.Namespace, r.Name
	return notFoundAs(h.c.Delete(rq.ctx, g), "SecurityGroupNotFound")
}

func (h *handler) createRule(rq *request, body json.RawMessage) (any, error) {
	var req SecurityGroupRuleRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	group, rule, err := RuleFromNeutron(req, rq.ns, rq.snap.ix)
	if err != nil {
		return nil, err
	}
	rule.ID = string(uuid.NewUUID())
	g := &netv1.SecurityGroup{}
	err = h.retryUpdate(rq.ctx, g, types.NamespacedName{Namespace: rq.ns, Name: group}, func() error {
		ids := RuleIDs(g)
		for i, r := range g.Spec.Rules {
			if ruleKey(r) == ruleKey(rule) {
				return &Error{http.StatusConflict, "SecurityGroupRuleExists", fmt.Sprintf("Security group rule already exists. Rule id is %s.", ids[i])}
			}
		}
		g.Spec.Rules = append(g.Spec.Rules, rule)
		return nil
	})
	if err != nil {
		return nil, notFoundAs(err, "SecurityGroupNotFound")
	}
	return ruleToNeutron(g, rule, rule.ID, rq.snap.ix, rq.id.ProjectID), nil
}

func (h *handler) deleteRule(rq *request, id string) error {
	var group string
	for i := range rq.snap.groups {
		if slices.Contains(RuleIDs(&rq.snap.groups[i]), id) {
			group = rq.snap.groups[i].Name
		}
	}
	if group == "" {
		return notFound("SecurityGroupRuleNotFound", "Security group rule %s does not exist", id)
	}
	g := &netv1.SecurityGroup{}
	err := h.retryUpdate(rq.ctx, g, types.NamespacedName{Namespace: rq.ns, Name: group}, func() error {
		i := slices.Index(RuleIDs(g), id)
		if i < 0 {
			return notFound("SecurityGroupRuleNotFound", "Security group rule %s does not exist", id)
		}
		g.Spec.Rules = slices.Delete(g.Spec.Rules, i, i+1)
		return nil
	})
	return notFoundAs(err, "SecurityGroupRuleNotFound")
}

// adminOnly refuses, as Neutron's policy does, external and provider
// attributes to callers without the admin role.
func (rq *request) adminOnly(req NetworkRequest) error {
	if (req.External != nil && *req.External) || req.NetworkType != nil || req.PhysicalNetwork != nil || req.SegmentationID != nil {
		if !rq.id.HasRole("admin") {
			return &Error{http.StatusForbidden, "PolicyNotAuthorized", "router:external and provider attributes need the admin role."}
		}
	}
	return nil
}

// routerPortID is the ID of router's interface on subnet, shown as a port.
func routerPortID(routerID, subnetID string) string {
	return derivedUUID("router-interface/" + routerID + "/" + subnetID)
}

// routerPorts are the routers' interfaces shown as Neutron's
// network:router_interface ports (read-only; Strata has no Port object for
// them), so that port list --router and router show find them.
func (rq *request) routerPorts() []Port {
	var out []Port
	for i := range rq.snap.routers {
		rt := &rq.snap.routers[i]
		routerID := string(rt.UID)
		for _, in := range rt.Spec.Interfaces {
			var sn *netv1.Subnet
			for j := range rq.snap.subnets {
				if rq.snap.subnets[j].Name == in.Subnet {
					sn = &rq.snap.subnets[j]
				}
			}
			if sn == nil {
				continue
			}
			s := SubnetToNeutron(sn, rq.snap.ix, rq.id.ProjectID)
			p := Port{
				ID: routerPortID(routerID, s.ID), Name: "", ProjectID: rq.id.ProjectID, TenantID: rq.id.ProjectID,
				NetworkID: s.NetworkID, AdminStateUp: true, Status: netv1.StatusDown,
				FixedIPs: []FixedIP{}, DeviceID: routerID, DeviceOwner: OwnerRouterInterface,
				SecurityGroups: []string{}, HostID: rt.Status.NodeName, VNICType: "normal",
				AllowedAddressPairs: []any{}, Tags: []string{}, CreatedAt: timestamp(rt), UpdatedAt: timestamp(rt),
			}
			ip := deref(s.GatewayIP)
			for _, st := range rt.Status.Interfaces {
				if st.Subnet == in.Subnet {
					ip, p.MACAddress, p.Status = st.IPAddress, st.MACAddress, netv1.StatusActive
				}
			}
			p.FixedIPs = append(p.FixedIPs, FixedIP{SubnetID: s.ID, IPAddress: ip})
			out = append(out, p)
		}
	}
	return out
}

// listed is what a list call shows: the caller's project's c; for an
// admin, as Neutron's admin context, every project's, each rendered as
// its own project (tenant_id, names of its other objects).
func (h *handler) listed(rq *request, c collection) ([]any, error) {
	out := c.list(rq)
	if !rq.id.HasRole("admin") {
		return out, nil
	}
	all, err := h.fetch(rq.ctx, "")
	if err != nil {
		return nil, err
	}
	for _, ns := range all.namespaces(c.kind) {
		if ns == rq.ns {
			continue
		}
		sub := *rq
		sub.ns, sub.snap = ns, all.snapshot(ns)
		sub.id.Namespace, sub.id.ProjectID = ns, rq.project(ns)
		out = append(out, c.list(&sub)...)
	}
	return out, nil
}

// namespaces are the namespaces holding objects a list of kind shows
// ("" is security group rules; ports include routers' interfaces).
func (o *objects) namespaces(kind string) []string {
	var nss []string
	switch kind {
	case kindNetwork:
		nss = namespacesOf(o.nets.Items)
	case kindSubnet:
		nss = namespacesOf(o.subnets.Items)
	case kindPort:
		nss = append(namespacesOf(o.ports.Items), namespacesOf(o.routers.Items)...)
	case kindRouter:
		nss = namespacesOf(o.routers.Items)
	case kindFloatingIP:
		nss = namespacesOf(o.fips.Items)
	default:
		nss = namespacesOf(o.groups.Items)
	}
	slices.Sort(nss)
	return slices.Compact(nss)
}

func namespacesOf[T any, P interface {
	*T
	GetNamespace() string
}](items []T) []string {
	out := make([]string, len(items))
	for i := range items {
		out[i] = P(&items[i]).GetNamespace()
	}
	return out
}
