package neutron

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi/osapitest"
)

// tokens is a fake Keystone.
type tokens = osapitest.Tokens

type env struct {
	t   *testing.T
	c   client.Client
	srv *httptest.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}}
	}
	objs := []client.Object{
		ns("p1"), ns("p2"), ns("infra"),
		&netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "public", UID: "public-id"}, Spec: netv1.NetworkSpec{External: true, ProviderType: "flat"}},
		&netv1.Subnet{ObjectMeta: metav1.ObjectMeta{Namespace: "infra", Name: "pubsub", UID: "pubsub-id"}, Spec: netv1.SubnetSpec{Network: "public", CIDR: "192.0.2.0/24"}},
		&netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "secret", UID: "secret-id"}},
		&netv1.SecurityGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "default", UID: "default-id"},
			Spec: netv1.SecurityGroupSpec{Rules: []netv1.SecurityGroupRule{{Direction: "egress"}, {Direction: "ingress", RemoteGroup: "default"}}}},
	}
	c := osapitest.Client(t, []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, netv1.AddToScheme, computev1.AddToScheme}, objs, interceptor.Funcs{})
	h := Handler(Config{Client: c, Authenticator: tokens{
		"member":  {UserName: "alice", ProjectID: "p1-project", Namespace: "p1", Roles: []string{"member"}},
		"reader":  {UserName: "bob", ProjectID: "p1-project", Namespace: "p1", Roles: []string{"reader"}},
		"other":   {UserName: "eve", ProjectID: "p2-project", Namespace: "p2", Roles: []string{"admin"}},
		"noscope": {UserName: "carol"},
	}})
	mux := http.NewServeMux()
	mux.Handle("/network/", h)
	e := &env{t: t, c: c, srv: httptest.NewServer(mux)}
	t.Cleanup(e.srv.Close)
	return e
}

// do calls the API as token and returns the code and decoded body.
func (e *env) do(token, method, path string, body any) (int, map[string]any) {
	e.t.Helper()
	u := path
	if !strings.HasPrefix(u, "http") {
		u = e.srv.URL + path
	}
	r := osapitest.Do(e.t, method, u, body, "X-Auth-Token", token)
	return r.Code, r.Body
}

// must calls the API as member and fails unless it answers code.
func (e *env) must(code int, method, path string, body any) map[string]any {
	e.t.Helper()
	got, out := e.do("member", method, path, body)
	if got != code {
		e.t.Fatalf("%s %s: %d %v, want %d", method, path, got, out, code)
	}
	return out
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func errorType(m map[string]any) string {
	ne, _ := m["NeutronError"].(map[string]any)
	return fmt.Sprint(ne["type"])
}

func (e *env) wantError(token, method, path string, body any, code int, typ string) {
	e.t.Helper()
	got, out := e.do(token, method, path, body)
	if got != code || errorType(out) != typ {
		e.t.Errorf("%s %s as %s: %d %v, want %d %s", method, path, token, got, out, code, typ)
	}
}

const v2 = "/network/v2.0/"

func TestWorkflow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	// Network, named after its Neutron name; another with a name that is
	// no DNS label.
	net := obj(e.must(201, "POST", v2+"networks", map[string]any{"network": map[string]any{"name": "net1", "admin_state_up": true}}), "network")
	netID := net["id"].(string)
	if net["name"] != "net1" || net["project_id"] != "p1-project" || net["provider:network_type"] != "vxlan" || netID == "" {
		t.Fatalf("network %v", net)
	}
	var n netv1.Network
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "net1"}, &n); err != nil || string(n.UID) != netID {
		t.Fatalf("network object: %v %v", err, n.UID)
	}
	odd := obj(e.must(201, "POST", v2+"networks", map[string]any{"network": map[string]any{"name": "My Net"}}), "network")
	var nets netv1.NetworkList
	_ = e.c.List(ctx, &nets, client.InNamespace("p1"))
	for _, o := range nets.Items {
		if string(o.UID) == odd["id"] && (!strings.HasPrefix(o.Name, "net-") || o.Annotations[AnnotationName] != "My Net") {
			t.Errorf("My Net is %s %v", o.Name, o.Annotations)
		}
	}

	// Subnet, router with an interface and a gateway.
	sub := obj(e.must(201, "POST", v2+"subnets", map[string]any{"subnet": map[string]any{"name": "sub1", "network_id": netID, "cidr": "10.0.0.0/24", "ip_version": 4}}), "subnet")
	subID := sub["id"].(string)
	if sub["gateway_ip"] != "10.0.0.1" || sub["network_id"] != netID {
		t.Errorf("subnet %v", sub)
	}
	router := obj(e.must(201, "POST", v2+"routers", map[string]any{"router": map[string]any{"name": "r1"}}), "router")
	routerID := router["id"].(string)
	if router["external_gateway_info"] != nil {
		t.Errorf("router %v", router)
	}
	itf := e.must(200, "PUT", v2+"routers/"+routerID+"/add_router_interface", map[string]any{"subnet_id": subID})
	if itf["subnet_id"] != subID || itf["id"] != routerID || itf["network_id"] != netID {
		t.Errorf("interface %v", itf)
	}
	e.wantError("member", "PUT", v2+"routers/"+routerID+"/add_router_interface", map[string]any{"subnet_id": subID}, 400, "HTTPBadRequest")
	rports := e.must(200, "GET", v2+"ports?device_id="+routerID, nil)["ports"].([]any)
	if len(rports) != 1 {
		t.Fatalf("router ports %v", rports)
	}
	rport := rports[0].(map[string]any)
	if rport["id"] != itf["port_id"] || rport["device_owner"] != "network:router_interface" ||
		fmt.Sprint(rport["fixed_ips"]) != fmt.Sprint([]any{map[string]any{"subnet_id": subID, "ip_address": "10.0.0.1"}}) {
		t.Errorf("router port %v, interface %v", rport, itf)
	}
	router = obj(e.must(200, "PUT", v2+"routers/"+routerID, map[string]any{"router": map[string]any{"external_gateway_info": map[string]any{"network_id": "public-id"}}}), "router")
	if gw := router["external_gateway_info"].(map[string]any); gw["network_id"] != "public-id" || gw["enable_snat"] != true {
		t.Errorf("gateway %v", gw)
	}
	var rt netv1.Router
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: "p1", Name: "r1"}, &rt); err != nil ||
		rt.Spec.ExternalGateway == nil || rt.Spec.ExternalGateway.Network != (netv1.NetworkRef{Namespace: "infra", Name: "public"}) || len(rt.Spec.Interfaces) != 1 {
		t.Fatalf("router object %v %+v", err, rt.Spec)
	}

	// A port with a fixed address, and a floating IP to it.
	port := obj(e.must(201, "POST", v2+"ports", map[string]any{"port": map[string]any{"network_id": netID, "name": "p",
		"fixed_ips": []any{map[string]any{"subnet_id": subID, "ip_address": "10.0.0.5"}}}}), "port")
	portID := port["id"].(string)
	if fmt.Sprint(port["fixed_ips"]) != fmt.Sprint([]any{map[string]any{"subnet_id": subID, "ip_address": "10.0.0.5"}}) ||
		fmt.Sprint(port["security_groups"]) != "[default-id]" || port["status"] != "DOWN" {
		t.Errorf("port %v", port)
	}
	fip := obj(e.must(201, "POST", v2+"floatingips", map[string]any{"floatingip": map[string]any{"floating_network_id": "public-id", "port_id": portID}}), "floatingip")
	if fip["port_id"] != portID || fip["floating_network_id"] != "public-id" {
		t.Errorf("floating ip %v", fip)
	}
	fipID := fip["id"].(string)
	fip = obj(e.must(200, "PUT", v2+"floatingips/"+fipID, map[string]any{"floatingip": map[string]any{"port_id": nil}}), "floatingip")
	if fip["port_id"] != nil {
		t.Errorf("disassociated floating ip %v", fip)
	}

	// Lists: own networks and external ones, never another project's.
	list := e.must(200, "GET", v2+"networks", nil)["networks"].([]any)
	if len(list) != 3 { // net1, My Net, public
		t.Errorf("networks: %v", list)
	}
	list = e.must(200, "GET", v2+"networks?router:external=True", nil)["networks"].([]any)
	if len(list) != 1 || obj(map[string]any{"n": list[0]}, "n")["id"] != "public-id" {
		t.Errorf("external networks: %v", list)
	}
	list = e.must(200, "GET", v2+"networks?name=net1&fields=id&fields=name", nil)["networks"].([]any)
	if len(list) != 1 || fmt.Sprint(list[0]) != fmt.Sprint(map[string]any{"id": netID, "name": "net1"}) {
		t.Errorf("net1 by name, id and name only: %v", list)
	}
	list = e.must(200, "GET", v2+"ports?fixed_ips=ip_address%3D10.0.0.5", nil)["ports"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != portID {
		t.Errorf("ports by fixed IP: %v", list)
	}
	list = e.must(200, "GET", v2+"subnets?network_id="+netID, nil)["subnets"].([]any)
	if len(list) != 1 {
		t.Errorf("subnets of net1: %v", list)
	}

	// Pagination through every network, one at a time.
	seen := map[string]bool{}
	next := v2 + "networks?limit=1"
	for next != "" && len(seen) < 10 {
		page := e.must(200, "GET", next, nil)
		for _, it := range page["networks"].([]any) {
			seen[it.(map[string]any)["id"].(string)] = true
		}
		next = ""
		links, _ := page["networks_links"].([]any)
		for _, l := range links {
			if l := l.(map[string]any); l["rel"] == "next" {
				next = l["href"].(string)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("paginated networks: %v", seen)
	}

	// Another project's network does not exist for p1; an external one
	// is not p1's to change.
	e.wantError("member", "GET", v2+"networks/secret-id", nil, 404, "NetworkNotFound")
	e.wantError("member", "PUT", v2+"networks/secret-id", map[string]any{"network": map[string]any{"name": "x"}}, 404, "NetworkNotFound")
	e.wantError("member", "DELETE", v2+"networks/secret-id", nil, 404, "NetworkNotFound")
	e.wantError("member", "DELETE", v2+"networks/public-id", nil, 403, "PolicyNotAuthorized")
	e.wantError("other", "GET", v2+"ports/"+portID, nil, 404, "PortNotFound")
	// Lists span projects for an admin (other is p2's), each object with
	// its own project, a shared one once; a member's stay its project's.
	_, adminNets := e.do("other", "GET", v2+"networks", nil)
	projects := map[string]string{}
	for _, n := range adminNets["networks"].([]any) {
		m := n.(map[string]any)
		if _, dup := projects[m["id"].(string)]; dup {
			t.Errorf("admin's network list has %s twice", m["id"])
		}
		projects[m["id"].(string)] = fmt.Sprint(m["tenant_id"])
	}
	if projects[netID] != "p1-uid" || projects["secret-id"] != "p2-project" || projects["public-id"] == "" {
		t.Errorf("admin's network list: %v", projects)
	}
	if _, p1Only := e.do("other", "GET", v2+"networks?project_id=p1-uid", nil); len(p1Only["networks"].([]any)) == 0 || slices.ContainsFunc(p1Only["networks"].([]any), func(n any) bool { return n.(map[string]any)["id"] == "secret-id" }) {
		t.Errorf("admin's network list of p1: %v", p1Only)
	}
	if _, ports := e.do("other", "GET", v2+"ports", nil); !slices.ContainsFunc(ports["ports"].([]any), func(p any) bool { return p.(map[string]any)["id"] == portID }) {
		t.Errorf("admin's port list lacks p1's port %s: %v", portID, ports)
	}
	if _, mine := e.do("member", "GET", v2+"networks", nil); slices.ContainsFunc(mine["networks"].([]any), func(n any) bool { return n.(map[string]any)["id"] == "secret-id" }) {
		t.Errorf("a member lists another project's network: %v", mine)
	}
	e.wantError("other", "PUT", v2+"routers/"+routerID+"/add_router_interface", map[string]any{"subnet_id": subID}, 404, "RouterNotFound")

	// Readers read but do not write; no token, no API; no project, no API.
	if code, _ := e.do("reader", "GET", v2+"networks/"+netID, nil); code != 200 {
		t.Errorf("reader show: %d", code)
	}
	e.wantError("reader", "POST", v2+"networks", map[string]any{"network": map[string]any{"name": "x"}}, 403, "PolicyNotAuthorized")
	e.wantError("reader", "DELETE", v2+"ports/"+portID, nil, 403, "PolicyNotAuthorized")
	e.wantError("", "GET", v2+"networks", nil, 401, "HTTPUnauthorized")
	e.wantError("bogus", "GET", v2+"networks", nil, 401, "HTTPUnauthorized")
	e.wantError("noscope", "GET", v2+"networks", nil, 403, "PolicyNotAuthorized")
	e.wantError("member", "POST", v2+"networks", map[string]any{"network": map[string]any{"name": "ext", "router:external": true}}, 403, "PolicyNotAuthorized")
	if code, out := e.do("other", "POST", v2+"networks", map[string]any{"network": map[string]any{"name": "ext2", "router:external": true, "provider:network_type": "flat"}}); code != 201 {
		t.Errorf("an admin creates an external network: %d %v", code, out)
	} else if id := obj(out, "network")["id"].(string); e.must(200, "GET", v2+"networks/"+id, nil)["network"] == nil {
		t.Errorf("p1 does not see p2's external network")
	}
	e.wantError("member", "POST", v2+"networks", `{"network": `, 400, "HTTPBadRequest")
	e.wantError("member", "POST", v2+"networks", `{"net": {}}`, 400, "HTTPBadRequest")

	// Deletes, refused while in use as Neutron refuses them.
	e.wantError("member", "DELETE", v2+"networks/"+netID, nil, 409, "NetworkInUse")
	e.wantError("member", "DELETE", v2+"routers/"+routerID, nil, 409, "RouterInUse")
	e.must(200, "PUT", v2+"routers/"+routerID+"/remove_router_interface", map[string]any{"port_id": rport["id"]})
	e.wantError("member", "PUT", v2+"routers/"+routerID+"/remove_router_interface", map[string]any{"subnet_id": subID}, 404, "RouterInterfaceNotFoundForSubnet")
	e.must(204, "DELETE", v2+"routers/"+routerID, nil)
	e.must(204, "DELETE", v2+"floatingips/"+fipID, nil)
	e.must(204, "DELETE", v2+"ports/"+portID, nil)
	e.must(204, "DELETE", v2+"networks/"+netID, nil)
	var subnets netv1.SubnetList
	if err := e.c.List(ctx, &subnets, client.InNamespace("p1")); err != nil || len(subnets.Items) != 0 {
		t.Errorf("subnets left after their network went: %v %v", err, subnets.Items)
	}
	e.wantError("member", "GET", v2+"networks/"+netID, nil, 404, "NetworkNotFound")
}

func TestSecurityGroups(t *testing.T) {
	e := newEnv(t)
	sg := obj(e.must(201, "POST", v2+"security-groups", map[string]any{"security_group": map[string]any{"name": "web", "description": "http"}}), "security_group")
	sgID := sg["id"].(string)
	if rules := sg["security_group_rules"].([]any); len(rules) != 1 || rules[0].(map[string]any)["direction"] != "egress" {
		t.Errorf("a new group lets everything out: %v", sg)
	}
	body := map[string]any{"security_group_rule": map[string]any{"security_group_id": sgID, "direction": "ingress", "protocol": "tcp",
		"port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0", "ethertype": "IPv4"}}
	rule := obj(e.must(201, "POST", v2+"security-group-rules", body), "security_group_rule")
	ruleID := rule["id"].(string)
	if rule["security_group_id"] != sgID || rule["protocol"] != "tcp" || len(ruleID) != 36 {
		t.Errorf("rule %v", rule)
	}
	e.wantError("member", "POST", v2+"security-group-rules", body, 409, "SecurityGroupRuleExists")
	list := e.must(200, "GET", v2+"security-group-rules?security_group_id="+sgID, nil)["security_group_rules"].([]any)
	if len(list) != 2 {
		t.Errorf("rules of web: %v", list)
	}
	e.must(200, "GET", v2+"security-group-rules/"+ruleID, nil)
	// The default group's rules, made without IDs, have stable ones.
	defRules := e.must(200, "GET", v2+"security-group-rules?security_group_id=default-id", nil)["security_group_rules"].([]any)
	if len(defRules) != 2 {
		t.Fatalf("default rules %v", defRules)
	}
	defRule := defRules[0].(map[string]any)["id"].(string)
	e.must(200, "GET", v2+"security-group-rules/"+defRule, nil)

	e.must(204, "DELETE", v2+"security-group-rules/"+ruleID, nil)
	e.wantError("member", "GET", v2+"security-group-rules/"+ruleID, nil, 404, "SecurityGroupRuleNotFound")
	e.wantError("member", "DELETE", v2+"security-groups/default-id", nil, 409, "SecurityGroupCannotRemoveDefault")
	e.must(204, "DELETE", v2+"security-groups/"+sgID, nil)
	e.wantError("other", "GET", v2+"security-groups/default-id", nil, 404, "SecurityGroupNotFound")
}

func TestDocuments(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/network/", "/network", "/network/v2.0/", "/network/v2.0"} {
		if code, out := e.do("", "GET", p, nil); code != 200 || len(out) == 0 {
			t.Errorf("GET %s: %d %v", p, code, out)
		}
	}
	exts := e.must(200, "GET", v2+"extensions", nil)["extensions"].([]any)
	var aliases []string
	for _, x := range exts {
		aliases = append(aliases, x.(map[string]any)["alias"].(string))
	}
	for _, want := range []string{"router", "external-net", "security-group", "quotas"} {
		if !strings.Contains(strings.Join(aliases, ","), want) {
			t.Errorf("extension %s missing from %v", want, aliases)
		}
	}
	e.must(200, "GET", v2+"extensions/router", nil)
	if q := obj(e.must(200, "GET", v2+"quotas/p1-project", nil), "quota"); q["network"] != float64(-1) {
		t.Errorf("quota %v", q)
	}
	e.must(200, "GET", v2+"networks.json", nil)
}

func TestToNeutronError(t *testing.T) {
	gr := schema.GroupResource{Group: "networking.strata.io", Resource: "subnets"}
	status := func(code int32, reason metav1.StatusReason, msg string) error {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Reason: reason, Message: msg}}
	}
	for _, tc := range []struct {
		name     string
		err      error
		code     int
		typ, msg string
	}{
		{"object not found", apierrors.NewNotFound(gr, "x"), 404, "SubnetNotFound", "The resource could not be found."},
		{"admission not found", status(404, metav1.StatusReasonNotFound, "Port p could not be found."), 404, "SubnetNotFound", "Port p could not be found."},
		{"subnet in use", apierrors.NewConflict(gr, "sub1", fmt.Errorf("Unable to complete operation on subnet sub1: One or more ports have an IP allocation from this subnet.")),
			409, "SubnetInUse", "Unable to complete operation on subnet sub1: One or more ports have an IP allocation from this subnet."},
		{"address taken", status(409, metav1.StatusReasonConflict, "IP address 10.0.0.5 already allocated in subnet sub1"), 409, "IpAddressAlreadyAllocated", "IP address 10.0.0.5 already allocated in subnet sub1"},
		{"invalid", apierrors.NewInvalid(schema.GroupKind{Group: "networking.strata.io", Kind: "Subnet"}, "s", field.ErrorList{field.Invalid(field.NewPath("spec", "cidr"), "10.0.0.1/24", "must be a network address")}),
			400, "HTTPBadRequest", "Invalid input for spec.cidr: Invalid value: \"10.0.0.1/24\": must be a network address"},
		{"bad request", apierrors.NewBadRequest("Bad router request: overlap"), 400, "HTTPBadRequest", "Bad router request: overlap"},
		{"forbidden", apierrors.NewForbidden(gr, "x", fmt.Errorf("no")), 403, "PolicyNotAuthorized", ""},
		{"other", fmt.Errorf("boom"), 500, "HTTPInternalServerError", "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := toNeutronError(tc.err, "SubnetNotFound")
			if got.Code != tc.code || got.Type != tc.typ || (tc.msg != "" && got.Message != tc.msg) {
				t.Errorf("got %+v, want %d %s %q", got, tc.code, tc.typ, tc.msg)
			}
		})
	}
}
