package nova

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
	"github.com/strata-cloud/strata/internal/openstack/osapi/osapitest"
)

// tokens is a fake Keystone.
type tokens = osapitest.Tokens

type env struct {
	t     *testing.T
	c     client.Client
	srv   *httptest.Server
	execs []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}}
	}
	yes, no := true, false
	objs := []client.Object{
		ns("p1"), ns("p2"),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1", UID: "node1-uid"}, Status: corev1.NodeStatus{
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
		&computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "m1.small", UID: "small-uid"}, Spec: computev1.FlavorSpec{VCPUs: 1, RAMMiB: 512, DiskGiB: 1, IsPublic: &yes}},
		&computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "m1.large", UID: "large-uid"}, Spec: computev1.FlavorSpec{VCPUs: 2, RAMMiB: 2048, DiskGiB: 10, IsPublic: &yes}},
		&computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: "hidden", UID: "hidden-uid"}, Spec: computev1.FlavorSpec{VCPUs: 8, RAMMiB: 8192, IsPublic: &no}},
		&storagev1.Image{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "cirros", UID: "cirros-id"}, Status: storagev1.ImageStatus{Phase: storagev1.ImageActive}},
		&storagev1.Image{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "theirs", UID: "their-image-id"}, Status: storagev1.ImageStatus{Phase: storagev1.ImageActive}},
		&netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "net1", UID: "net1-id", Annotations: map[string]string{"networking.strata.io/name": "private"}}},
		&netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "net2", UID: "net2-id"}},
		&netv1.SecurityGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "default", UID: "default-id"}},
		&netv1.SecurityGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "web", UID: "web-id"}},
		&computev1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "secret", UID: "secret-vm-id"},
			Spec: computev1.VirtualMachineSpec{Flavor: "m1.small", Image: "theirs"}},
	}
	c := osapitest.Client(t, []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, netv1.AddToScheme, computev1.AddToScheme, storagev1.AddToScheme}, objs, interceptor.Funcs{})
	e := &env{t: t, c: c}
	h := Handler(Config{Client: c, Authenticator: osapitest.Callers(),
		Logs: func(_ context.Context, ns, pod string, tail int64) (string, error) {
			return fmt.Sprintf("console of %s/%s tail %d", ns, pod, tail), nil
		},
		Exec: func(_ context.Context, ns, pod, container string, cmd []string) (string, error) {
			e.execs = append(e.execs, ns+"/"+pod+"/"+container+": "+strings.Join(cmd, " "))
			switch cmd[len(cmd)-1] {
			case "stop":
				return "status: paused\n", nil
			case "cont":
				return "status: running\n", nil
			}
			return "", errors.New("unknown")
		},
	})
	mux := http.NewServeMux()
	mux.Handle("/compute/", h)
	mux.Handle("/compute", h)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	return e
}

type resp struct {
	code   int
	body   map[string]any
	header http.Header
}

// call calls the API as token at microversion mv ("" for none).
func (e *env) call(token, mv, method, path string, body any) resp {
	e.t.Helper()
	if mv != "" {
		mv = "compute " + mv
	}
	r := osapitest.Do(e.t, method, e.srv.URL+path, body, "X-Auth-Token", token, "OpenStack-API-Version", mv)
	return resp{r.Code, r.Body, r.Header}
}

// must calls as member and fails unless the code is code.
func (e *env) must(code int, mv, method, path string, body any) map[string]any {
	e.t.Helper()
	r := e.call("member", mv, method, path, body)
	if r.code != code {
		e.t.Fatalf("%s %s: %d %v, want %d", method, path, r.code, r.body, code)
	}
	return r.body
}

// fault checks an error response: its code, fault name and message part.
func (e *env) fault(r resp, code int, name, msg string) {
	e.t.Helper()
	f, ok := r.body[name].(map[string]any)
	if r.code != code || !ok || f["code"] != float64(code) || !strings.Contains(fmt.Sprint(f["message"]), msg) {
		e.t.Fatalf("got %d %v, want %d %s containing %q", r.code, r.body, code, name, msg)
	}
}

func obj(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func (e *env) vm(id string) *computev1.VirtualMachine {
	e.t.Helper()
	var l computev1.VirtualMachineList
	if err := e.c.List(context.Background(), &l); err != nil {
		e.t.Fatal(err)
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == id {
			return &l.Items[i]
		}
	}
	e.t.Fatalf("no VM %s", id)
	return nil
}

func (e *env) setStatus(id string, st computev1.VirtualMachineStatus) {
	e.t.Helper()
	vm := e.vm(id)
	vm.Status = st
	if err := e.c.Update(context.Background(), vm); err != nil {
		e.t.Fatal(err)
	}
}

func running() computev1.VirtualMachineStatus {
	return computev1.VirtualMachineStatus{Phase: computev1.VirtualMachineRunning, NodeName: "node1", VCPUs: 1, MemoryMiB: 512,
		IPs: []string{"10.0.0.5"}, Conditions: []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Running", LastTransitionTime: metav1.Now()}}}
}

func TestVersionsAndMicroversions(t *testing.T) {
	e := newEnv(t)
	r := e.call("", "", "GET", "/compute", nil)
	vs := r.body["versions"].([]any)
	if r.code != 200 || len(vs) != 1 || vs[0].(map[string]any)["version"] != MaxVersion.String() || vs[0].(map[string]any)["min_version"] != "2.1" {
		t.Fatalf("versions %d %v", r.code, r.body)
	}
	r = e.call("", "", "GET", "/compute/v2.1/", nil)
	if v := obj(r.body, "version"); r.code != 200 || v["id"] != "v2.1" || !strings.HasSuffix(v["links"].([]any)[0].(map[string]any)["href"].(string), "/compute/v2.1/") {
		t.Fatalf("version %d %v", r.code, r.body)
	}
	if r.header.Get("X-Openstack-Request-Id") == "" || r.header.Get("X-Compute-Request-Id") != r.header.Get("X-Openstack-Request-Id") {
		t.Errorf("request ids %v", r.header)
	}
	r = e.call("member", "2.60", "GET", "/compute/v2.1/servers", nil)
	if r.code != 200 || r.header.Get("OpenStack-API-Version") != "compute 2.60" || r.header.Get("X-OpenStack-Nova-API-Version") != "2.60" ||
		!strings.Contains(r.header.Get("Vary"), "OpenStack-API-Version") {
		t.Errorf("2.60: %d %v", r.code, r.header)
	}
	r = e.call("member", "latest", "GET", "/compute/v2.1/servers", nil)
	if r.header.Get("OpenStack-API-Version") != "compute "+MaxVersion.String() {
		t.Errorf("latest: %v", r.header)
	}
	r = e.call("member", "", "GET", "/compute/v2.1/servers", nil)
	if r.header.Get("X-OpenStack-Nova-API-Version") != "2.1" {
		t.Errorf("default: %v", r.header)
	}
	e.fault(e.call("member", "2.500", "GET", "/compute/v2.1/servers", nil), 406, "computeFault", "maximum is "+MaxVersion.String())
	e.fault(e.call("member", "x.y", "GET", "/compute/v2.1/servers", nil), 400, "badRequest", "invalid format")
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	for _, token := range []string{"", "bogus"} {
		r := e.call(token, "", "GET", "/compute/v2.1/servers", nil)
		if f, ok := r.body["error"].(map[string]any); r.code != 401 || !ok || f["code"] != float64(401) || f["title"] != "Unauthorized" {
			t.Errorf("token %q: %d %v", token, r.code, r.body)
		}
		if r.header.Get("X-Openstack-Request-Id") == "" {
			t.Error("no request id on a 401")
		}
	}
	e.fault(e.call("noscope", "", "GET", "/compute/v2.1/servers", nil), 403, "forbidden", "project-scoped")
	e.fault(e.call("member", "", "GET", "/compute/v2.1/nothing-here", nil), 404, "itemNotFound", "")
}

func createBody(extra map[string]any) map[string]any {
	s := map[string]any{"name": "web-1", "flavorRef": "m1.small", "imageRef": "cirros-id"}
	for k, v := range extra {
		s[k] = v
	}
	return map[string]any{"server": s}
}

func TestServerLifecycle(t *testing.T) {
	e := newEnv(t)
	// 2.1, no networks: the project's only network.
	out := e.must(202, "", "POST", "/compute/v2.1/servers", createBody(map[string]any{
		"key_name": nil, "user_data": "I2Nsb3VkLWNvbmZpZwo=", "metadata": map[string]string{"role": "web"}}))
	s := obj(out, "server")
	id := s["id"].(string)
	if _, ok := s["adminPass"]; ok || id == "" || s["links"] == nil {
		t.Fatalf("create answer %v", s)
	}
	vm := e.vm(id)
	if vm.Namespace != "p1" || vm.Name != "web-1" || vm.Spec.Flavor != "m1.small" || vm.Spec.Image != "cirros" ||
		len(vm.Spec.Networks) != 1 || vm.Spec.Networks[0].Network != "net1" || vm.Spec.UserData != "#cloud-config\n" ||
		vm.Annotations[AnnotationUserID] != "alice-id" {
		t.Fatalf("vm %+v", vm)
	}

	got := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id, nil), "server")
	if got["status"] != "BUILD" || got["OS-EXT-STS:vm_state"] != "building" || obj(got, "flavor")["id"] != "m1.small" ||
		obj(got, "image")["id"] != "cirros-id" || obj(got, "metadata")["role"] != "web" || got["tenant_id"] != "p1" || got["user_id"] != "alice-id" {
		t.Fatalf("show %v", got)
	}
	// Running, on its port.
	e.setStatus(id, running())
	port := &netv1.Port{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "web-1-net1", UID: "port-id"},
		Spec:   netv1.PortSpec{Network: "net1"},
		Status: netv1.PortStatus{MACAddress: "fa:16:3e:11:22:33", FixedIPs: []netv1.FixedIP{{Subnet: "sub", IPAddress: "10.0.0.5"}}, Status: "ACTIVE"}}
	if err := e.c.Create(context.Background(), port); err != nil {
		t.Fatal(err)
	}
	got = obj(e.must(200, "2.47", "GET", "/compute/v2.1/servers/"+id, nil), "server")
	addrs := got["addresses"].(map[string]any)["private"].([]any)
	if got["status"] != "ACTIVE" || got["OS-EXT-STS:power_state"] != float64(1) || len(addrs) != 1 ||
		addrs[0].(map[string]any)["addr"] != "10.0.0.5" || addrs[0].(map[string]any)["OS-EXT-IPS-MAC:mac_addr"] != "fa:16:3e:11:22:33" {
		t.Fatalf("running %v", got)
	}
	if f := obj(got, "flavor"); f["original_name"] != "m1.small" || f["ram"] != float64(512) {
		t.Errorf("2.47 flavor %v", f)
	}
	if _, ok := got["OS-EXT-SRV-ATTR:host"]; ok {
		t.Error("host shown to a member")
	}
	if got := obj(e.call("admin", "", "GET", "/compute/v2.1/servers/"+id, nil).body, "server"); got["OS-EXT-SRV-ATTR:host"] != "node1" {
		t.Errorf("admin sees no host: %v", got)
	}
	if sg := got["security_groups"].([]any); len(sg) != 1 || sg[0].(map[string]any)["name"] != "default" {
		t.Errorf("security groups %v", got["security_groups"])
	}
	ifs := e.must(200, "", "GET", "/compute/v2.1/servers/"+id+"/os-interface", nil)["interfaceAttachments"].([]any)
	if len(ifs) != 1 || ifs[0].(map[string]any)["port_id"] != "port-id" || ifs[0].(map[string]any)["net_id"] != "net1-id" {
		t.Errorf("interfaces %v", ifs)
	}
	if ips := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id+"/ips", nil), "addresses"); ips["private"] == nil {
		t.Errorf("ips %v", ips)
	}

	// Lists and filters.
	e.must(202, "2.37", "POST", "/compute/v2.1/servers", createBody(map[string]any{"name": "db", "networks": "auto"}))
	list := e.must(200, "", "GET", "/compute/v2.1/servers", nil)["servers"].([]any)
	if len(list) != 2 {
		t.Fatalf("list %v", list)
	}
	for q, want := range map[string]int{"?name=web": 1, "?name=^d": 1, "?name=nope": 0, "?status=ACTIVE": 1, "?status=BUILD": 1,
		"?flavor=m1.small": 2, "?image=cirros-id": 2, "?all_tenants=1": 2, "?limit=1": 1, "?ip=10.0.0": 1, "?changes-since=2000-01-01T00:00:00Z": 2, "?changes-since=2999-01-01T00:00:00": 0} {
		if got := e.must(200, "", "GET", "/compute/v2.1/servers/detail"+q, nil)["servers"].([]any); len(got) != want {
			t.Errorf("detail%s: %d servers, want %d", q, len(got), want)
		}
	}
	page := e.must(200, "", "GET", "/compute/v2.1/servers?limit=1", nil)
	if page["servers_links"] == nil {
		t.Errorf("no next link: %v", page)
	}
	first := page["servers"].([]any)[0].(map[string]any)["id"].(string)
	if rest := e.must(200, "", "GET", "/compute/v2.1/servers?marker="+first, nil)["servers"].([]any); len(rest) != 1 || rest[0].(map[string]any)["id"] == first {
		t.Errorf("after marker %v", rest)
	}
	e.fault(e.call("member", "", "GET", "/compute/v2.1/servers?marker=nope", nil), 400, "badRequest", "marker")
	e.fault(e.call("member", "", "GET", "/compute/v2.1/servers?changes-since=yesterday", nil), 400, "badRequest", "changes-since")

	// Rename: a display name.
	got = obj(e.must(200, "", "PUT", "/compute/v2.1/servers/"+id, map[string]any{"server": map[string]any{"name": "Web Server"}}), "server")
	if got["name"] != "Web Server" || e.vm(id).Name != "web-1" || e.vm(id).Annotations[AnnotationName] != "Web Server" {
		t.Errorf("rename %v", got)
	}
	if got := e.must(200, "", "GET", "/compute/v2.1/servers?name=Web%20Server", nil)["servers"].([]any); len(got) != 1 {
		t.Errorf("by new name: %v", got)
	}

	// Metadata.
	e.must(200, "", "POST", "/compute/v2.1/servers/"+id+"/metadata", map[string]any{"metadata": map[string]string{"tier": "1"}})
	if md := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id+"/metadata", nil), "metadata"); md["tier"] != "1" || md["role"] != "web" {
		t.Errorf("metadata %v", md)
	}
	e.must(200, "", "PUT", "/compute/v2.1/servers/"+id+"/metadata/tier", map[string]any{"meta": map[string]string{"tier": "2"}})
	if m := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id+"/metadata/tier", nil), "meta"); m["tier"] != "2" {
		t.Errorf("meta %v", m)
	}
	e.must(204, "", "DELETE", "/compute/v2.1/servers/"+id+"/metadata/tier", nil)
	e.fault(e.call("member", "", "GET", "/compute/v2.1/servers/"+id+"/metadata/tier", nil), 404, "itemNotFound", "")
	e.must(200, "", "PUT", "/compute/v2.1/servers/"+id+"/metadata", map[string]any{"metadata": map[string]string{}})
	if md := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id+"/metadata", nil), "metadata"); len(md) != 0 {
		t.Errorf("replaced metadata %v", md)
	}

	// Delete.
	e.fault(e.call("reader", "", "DELETE", "/compute/v2.1/servers/"+id, nil), 403, "forbidden", "member")
	e.must(204, "", "DELETE", "/compute/v2.1/servers/"+id, nil)
	e.fault(e.call("member", "", "GET", "/compute/v2.1/servers/"+id, nil), 404, "itemNotFound", id)
}

func TestServerCreateNetworks(t *testing.T) {
	e := newEnv(t)
	// Security groups: a port of our own with them, owned by the VM.
	out := e.must(202, "2.37", "POST", "/compute/v2.1/servers", createBody(map[string]any{
		"networks": []map[string]string{{"uuid": "net1-id"}}, "security_groups": []map[string]string{{"name": "web-id"}}}))
	vm := e.vm(obj(out, "server")["id"].(string))
	if len(vm.Spec.Networks) != 1 || vm.Spec.Networks[0].Port != "web-1-net1" {
		t.Fatalf("networks %+v", vm.Spec.Networks)
	}
	port := &netv1.Port{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: "web-1-net1"}, port); err != nil {
		t.Fatal(err)
	}
	if port.Spec.Network != "net1" || len(port.Spec.SecurityGroups) != 1 || port.Spec.SecurityGroups[0] != "web" ||
		len(port.OwnerReferences) != 1 || port.OwnerReferences[0].UID != vm.UID {
		t.Errorf("port %+v", port)
	}
	// The same name again: another object name, the Nova name kept.
	out = e.must(202, "2.37", "POST", "/compute/v2.1/servers", createBody(map[string]any{"networks": []map[string]string{{"uuid": "private"}}}))
	vm = e.vm(obj(out, "server")["id"].(string))
	if vm.Name == "web-1" || !strings.HasPrefix(vm.Name, "server-") || DisplayName(vm) != "web-1" || vm.Spec.Networks[0].Network != "net1" {
		t.Errorf("second web-1: %+v", vm.ObjectMeta)
	}
	// A given port.
	if err := e.c.Create(context.Background(), &netv1.Port{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "myport", UID: "myport-id"}, Spec: netv1.PortSpec{Network: "net1"}}); err != nil {
		t.Fatal(err)
	}
	out = e.must(202, "2.37", "POST", "/compute/v2.1/servers", createBody(map[string]any{"name": "p", "networks": []map[string]string{{"port": "myport-id"}}}))
	if vm = e.vm(obj(out, "server")["id"].(string)); vm.Spec.Networks[0].Port != "myport" {
		t.Errorf("port: %+v", vm.Spec.Networks)
	}

	for name, tc := range map[string]struct {
		mv   string
		body map[string]any
		code int
		msg  string
	}{
		"unknown flavor":       {"", createBody(map[string]any{"flavorRef": "nope"}), 400, "Flavor nope could not be found"},
		"private flavor":       {"", createBody(map[string]any{"flavorRef": "hidden"}), 400, "Flavor hidden could not be found"},
		"unknown image":        {"", createBody(map[string]any{"imageRef": "nope"}), 400, "Image nope could not be found"},
		"their image":          {"", createBody(map[string]any{"imageRef": "their-image-id"}), 400, "could not be found"},
		"unknown network":      {"2.37", createBody(map[string]any{"networks": []map[string]string{{"uuid": "nope"}}}), 400, "Network nope could not be found"},
		"their network":        {"2.37", createBody(map[string]any{"networks": []map[string]string{{"uuid": "net2-id"}}}), 400, "Network net2-id could not be found"},
		"unknown port":         {"2.37", createBody(map[string]any{"networks": []map[string]string{{"port": "nope"}}}), 400, "Port id nope could not be found"},
		"unknown group":        {"", createBody(map[string]any{"security_groups": []map[string]string{{"name": "nope"}}}), 400, "Security group nope not found"},
		"unknown key":          {"", createBody(map[string]any{"key_name": "nope"}), 400, "Invalid key_name provided"},
		"no networks, 2.37":    {"2.37", createBody(nil), 400, "'networks' is a required property"},
		"networks none":        {"2.37", createBody(map[string]any{"networks": "none"}), 400, "without a network"},
		"no server":            {"", map[string]any{"serverx": 1}, 400, "server"},
		"name missing":         {"", map[string]any{"server": map[string]any{"flavorRef": "m1.small", "imageRef": "cirros-id"}}, 400, "'name' is a required property"},
		"port already in use?": {"2.37", createBody(map[string]any{"name": "q", "networks": []map[string]string{{"port": "web-1-net1"}}}), 409, "in use"},
	} {
		t.Run(name, func(t *testing.T) {
			e.fault(e.call("member", tc.mv, "POST", "/compute/v2.1/servers", tc.body), tc.code, osapi.FaultName(tc.code), tc.msg)
		})
	}
	e.fault(e.call("member", "", "POST", "/compute/v2.1/servers", "{not json"), 400, "badRequest", "Malformed")
	e.fault(e.call("reader", "", "POST", "/compute/v2.1/servers", createBody(nil)), 403, "forbidden", "")
}

func TestServerCreateAmbiguousNetwork(t *testing.T) {
	e := newEnv(t)
	if err := e.c.Create(context.Background(), &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "net3"}}); err != nil {
		t.Fatal(err)
	}
	e.fault(e.call("member", "2.37", "POST", "/compute/v2.1/servers", createBody(map[string]any{"networks": "auto"})), 409, "conflictingRequest", "Multiple possible networks")
	// Another project, without networks: the pod network.
	if err := e.c.Delete(context.Background(), &netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "net2"}}); err != nil {
		t.Fatal(err)
	}
	r := e.call("other", "", "POST", "/compute/v2.1/servers", map[string]any{"server": map[string]any{"name": "x", "flavorRef": "m1.small", "imageRef": "theirs"}})
	if r.code != 202 {
		t.Fatalf("%d %v", r.code, r.body)
	}
	if vm := e.vm(obj(r.body, "server")["id"].(string)); vm.Namespace != "p2" || len(vm.Spec.Networks) != 0 {
		t.Errorf("pod network VM %+v", vm)
	}
}

func TestCrossProject(t *testing.T) {
	e := newEnv(t)
	for _, m := range []struct{ method, path string }{
		{"GET", "/servers/secret-vm-id"}, {"PUT", "/servers/secret-vm-id"}, {"DELETE", "/servers/secret-vm-id"},
		{"GET", "/servers/secret-vm-id/metadata"}, {"GET", "/servers/secret-vm-id/os-interface"},
	} {
		var body any
		if m.method == "PUT" {
			body = map[string]any{"server": map[string]any{"name": "mine"}}
		}
		e.fault(e.call("member", "", m.method, "/compute/v2.1"+m.path, body), 404, "itemNotFound", "secret-vm-id")
	}
	e.fault(e.call("member", "", "POST", "/compute/v2.1/servers/secret-vm-id/action", map[string]any{"os-stop": nil}), 404, "itemNotFound", "")
	if l := e.must(200, "", "GET", "/compute/v2.1/servers/detail?all_tenants=1", nil)["servers"].([]any); len(l) != 0 {
		t.Errorf("another project's servers: %v", l)
	}
	// An admin lists every project's servers with all_tenants, each with
	// its own tenant_id; project_id narrows it.
	l := e.call("admin", "", "GET", "/compute/v2.1/servers/detail?all_tenants=1", nil).body["servers"].([]any)
	if len(l) != 1 || l[0].(map[string]any)["id"] != "secret-vm-id" || l[0].(map[string]any)["tenant_id"] != "p2" {
		t.Errorf("admin's all_tenants: %v", l)
	}
	if l := e.call("admin", "", "GET", "/compute/v2.1/servers?all_tenants=true&project_id=p1", nil).body["servers"].([]any); len(l) != 0 {
		t.Errorf("admin's all_tenants of p1: %v", l)
	}
	if l := e.call("admin", "", "GET", "/compute/v2.1/servers", nil).body["servers"].([]any); len(l) != 0 {
		t.Errorf("admin's own project's servers: %v", l)
	}
	if r := e.call("admin", "", "GET", "/compute/v2.1/servers/secret-vm-id", nil); r.code != 200 || obj(r.body, "server")["tenant_id"] != "p2" {
		t.Errorf("admin shows another project's server: %d %v", r.code, r.body)
	}
	// and acts on it by ID, as its project: metadata (a body read again),
	// then delete.
	if r := e.call("admin", "", "PUT", "/compute/v2.1/servers/secret-vm-id/metadata/owner", map[string]any{"meta": map[string]any{"owner": "ops"}}); r.code != 200 {
		t.Errorf("admin sets another project's server's metadata: %d %v", r.code, r.body)
	}
	if r := e.call("admin", "", "DELETE", "/compute/v2.1/servers/secret-vm-id", nil); r.code != 204 {
		t.Errorf("admin deletes another project's server: %d %v", r.code, r.body)
	}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "p2", Name: "secret"}, &computev1.VirtualMachine{}); !apierrors.IsNotFound(err) {
		t.Errorf("p2's server after the admin's delete: %v", err)
	}
	e.fault(e.call("admin", "", "GET", "/compute/v2.1/servers/no-such-id", nil), 404, "itemNotFound", "no-such-id")
}

func TestActions(t *testing.T) {
	e := newEnv(t)
	id := obj(e.must(202, "", "POST", "/compute/v2.1/servers", createBody(nil)), "server")["id"].(string)
	act := func(token string, body any) resp {
		return e.call(token, "", "POST", "/compute/v2.1/servers/"+id+"/action", body)
	}
	// Not running yet.
	e.fault(act("member", map[string]any{"pause": nil}), 409, "conflictingRequest", "Cannot 'pause'")
	e.setStatus(id, running())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "vm-web-1", UID: "pod-1"}}
	if err := e.c.Create(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	st := running()
	st.LauncherPod = "vm-web-1"
	e.setStatus(id, st)

	// Stop, stop again, start.
	if r := act("member", map[string]any{"os-stop": nil}); r.code != 202 {
		t.Fatalf("stop %d %v", r.code, r.body)
	}
	if vm := e.vm(id); vm.Spec.RunStrategy != computev1.RunStrategyHalted || vm.Annotations[AnnotationLastRunStrategy] != "Always" {
		t.Fatalf("stopped %+v", vm)
	}
	if got := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id, nil), "server"); got["OS-EXT-STS:task_state"] != "powering-off" {
		t.Errorf("stopping %v", got["OS-EXT-STS:task_state"])
	}
	e.fault(act("member", map[string]any{"os-stop": nil}), 409, "conflictingRequest", "stop")
	e.fault(act("member", map[string]any{"reboot": map[string]string{"type": "HARD"}}), 409, "conflictingRequest", "reboot")
	if r := act("member", map[string]any{"os-start": nil}); r.code != 202 {
		t.Fatalf("start %d %v", r.code, r.body)
	}
	if vm := e.vm(id); vm.Spec.RunStrategy != computev1.RunStrategyAlways || vm.Annotations[AnnotationLastRunStrategy] != "" {
		t.Fatalf("started %+v", vm)
	}
	e.fault(act("member", map[string]any{"os-start": nil}), 409, "conflictingRequest", "start")

	// Reboot: a new launcher pod.
	e.fault(act("member", map[string]any{"reboot": map[string]string{"type": "gentle"}}), 400, "badRequest", "SOFT or HARD")
	if r := act("member", map[string]any{"reboot": map[string]string{"type": "SOFT"}}); r.code != 202 {
		t.Fatalf("reboot %d %v", r.code, r.body)
	}
	if err := e.c.Get(context.Background(), client.ObjectKeyFromObject(pod), &corev1.Pod{}); err == nil {
		t.Error("the launcher pod is still there")
	}
	if got := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id, nil), "server"); got["status"] != "HARD_REBOOT" {
		t.Errorf("rebooting: %v", got["status"])
	}
	e.fault(act("member", map[string]any{"reboot": map[string]string{"type": "SOFT"}}), 409, "conflictingRequest", "")

	// Pause and unpause through QEMU.
	if err := e.c.Create(context.Background(), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "vm-web-1", UID: "pod-2"}}); err != nil {
		t.Fatal(err)
	}
	vm := e.vm(id)
	delete(vm.Annotations, AnnotationRebootAt)
	if err := e.c.Update(context.Background(), vm); err != nil {
		t.Fatal(err)
	}
	if r := act("member", map[string]any{"pause": nil}); r.code != 202 {
		t.Fatalf("pause %d %v", r.code, r.body)
	}
	p := &corev1.Pod{}
	_ = e.c.Get(context.Background(), client.ObjectKeyFromObject(pod), p)
	if p.Annotations["compute.strata.io/paused"] != "true" || len(e.execs) != 1 || !strings.Contains(e.execs[0], "p1/vm-web-1/compute: ") || !strings.HasSuffix(e.execs[0], "qmp stop") {
		t.Errorf("pause: %v %v", p.Annotations, e.execs)
	}
	st.Conditions = append(st.Conditions, metav1.Condition{Type: "Paused", Status: "True", Reason: "PausedByUser", LastTransitionTime: metav1.Now()})
	e.setStatus(id, st)
	if got := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id, nil), "server"); got["status"] != "PAUSED" {
		t.Errorf("paused: %v", got["status"])
	}
	e.fault(act("member", map[string]any{"pause": nil}), 409, "conflictingRequest", "pause")
	if r := act("member", map[string]any{"unpause": nil}); r.code != 202 {
		t.Fatalf("unpause %d %v", r.code, r.body)
	}
	_ = e.c.Get(context.Background(), client.ObjectKeyFromObject(pod), p)
	if _, ok := p.Annotations["compute.strata.io/paused"]; ok {
		t.Errorf("unpause left %v", p.Annotations)
	}
	st.Conditions = st.Conditions[:1]
	e.setStatus(id, st)

	// Console output: the launcher's log.
	r := act("member", map[string]any{"os-getConsoleOutput": map[string]any{"length": 50}})
	if r.code != 200 || r.body["output"] != "console of p1/vm-web-1 tail 50" {
		t.Errorf("console %d %v", r.code, r.body)
	}

	// Resize, confirm; resize, revert.
	e.fault(act("member", map[string]any{"resize": map[string]any{"flavorRef": "m1.small"}}), 400, "badRequest", "must change flavor")
	e.fault(act("member", map[string]any{"resize": map[string]any{"flavorRef": "nope"}}), 400, "badRequest", "Flavor nope could not be found")
	e.fault(act("member", map[string]any{"confirmResize": nil}), 400, "badRequest", "not been resized")
	if r := act("member", map[string]any{"resize": map[string]any{"flavorRef": "m1.large"}}); r.code != 202 {
		t.Fatalf("resize %d %v", r.code, r.body)
	}
	if vm := e.vm(id); vm.Spec.Flavor != "m1.large" || vm.Annotations[AnnotationResizeFrom] != "m1.small" {
		t.Fatalf("resized %+v", vm)
	}
	e.fault(act("member", map[string]any{"resize": map[string]any{"flavorRef": "m1.small"}}), 409, "conflictingRequest", "")
	if r := act("member", map[string]any{"revertResize": nil}); r.code != 202 {
		t.Fatalf("revert %d %v", r.code, r.body)
	}
	if vm := e.vm(id); vm.Spec.Flavor != "m1.small" || vm.Annotations[AnnotationResizeFrom] != "" {
		t.Fatalf("reverted %+v", vm)
	}

	// Migration is an admin's.
	e.fault(act("member", map[string]any{"os-migrateLive": map[string]any{"host": nil, "block_migration": "auto"}}), 403, "forbidden", "admin")
	vm = e.vm(id)
	delete(vm.Annotations, AnnotationRebootAt)
	_ = e.c.Update(context.Background(), vm)
	e.fault(act("admin", map[string]any{"os-migrateLive": map[string]any{"host": "node9"}}), 400, "badRequest", "node9 could not be found")
	vm = e.vm(id)
	vm.Spec.Volumes = []computev1.VirtualMachineVolume{{Volume: "data"}}
	_ = e.c.Update(context.Background(), vm)
	e.fault(act("admin", map[string]any{"migrate": nil}), 400, "badRequest", "the server has volumes (data)")
	vm = e.vm(id)
	vm.Spec.Volumes = nil
	_ = e.c.Update(context.Background(), vm)
	if r := act("admin", map[string]any{"os-migrateLive": map[string]any{"host": nil, "block_migration": "auto"}}); r.code != 202 {
		t.Fatalf("migrate %d %v", r.code, r.body)
	}
	var ms computev1.VirtualMachineMigrationList
	_ = e.c.List(context.Background(), &ms)
	if len(ms.Items) != 1 || ms.Items[0].Spec.VMName != "web-1" || ms.Items[0].Namespace != "p1" {
		t.Errorf("migrations %+v", ms.Items)
	}

	e.fault(act("member", map[string]any{"createImage": map[string]any{"name": "snap"}}), 501, "notImplemented", "")
	e.fault(act("member", map[string]any{"lock": nil}), 501, "notImplemented", "lock")
	e.fault(act("member", map[string]any{"fly": nil}), 400, "badRequest", "no such action: fly")
	e.fault(act("reader", map[string]any{"os-stop": nil}), 403, "forbidden", "")
}

func TestFlavors(t *testing.T) {
	e := newEnv(t)
	list := e.must(200, "", "GET", "/compute/v2.1/flavors", nil)["flavors"].([]any)
	if len(list) != 2 {
		t.Fatalf("member's flavors %v", list)
	}
	if l := e.call("admin", "", "GET", "/compute/v2.1/flavors/detail?is_public=None", nil).body["flavors"].([]any); len(l) != 3 {
		t.Errorf("admin, all: %v", l)
	}
	if l := e.must(200, "", "GET", "/compute/v2.1/flavors/detail?minRam=1024", nil)["flavors"].([]any); len(l) != 1 || l[0].(map[string]any)["ram"] != float64(2048) {
		t.Errorf("minRam %v", l)
	}
	f := obj(e.must(200, "", "GET", "/compute/v2.1/flavors/m1.small", nil), "flavor")
	if f["id"] != "m1.small" || f["vcpus"] != float64(1) || f["os-flavor-access:is_public"] != true || f["OS-FLV-EXT-DATA:ephemeral"] != float64(0) {
		t.Errorf("show %v", f)
	}
	e.fault(e.call("member", "", "GET", "/compute/v2.1/flavors/hidden", nil), 404, "itemNotFound", "hidden")
	e.fault(e.call("member", "", "GET", "/compute/v2.1/flavors/nope", nil), 404, "itemNotFound", "Flavor nope could not be found")

	body := map[string]any{"flavor": map[string]any{"name": "tiny", "ram": 256, "vcpus": 1, "disk": 0, "id": nil, "os-flavor-access:is_public": true}}
	e.fault(e.call("member", "", "POST", "/compute/v2.1/flavors", body), 403, "forbidden", "admin")
	r := e.call("admin", "", "POST", "/compute/v2.1/flavors", body)
	if r.code != 200 || obj(r.body, "flavor")["id"] != "tiny" {
		t.Fatalf("create %d %v", r.code, r.body)
	}
	e.fault(e.call("admin", "", "POST", "/compute/v2.1/flavors", body), 409, "conflictingRequest", "tiny")
	// Extra specs.
	if r := e.call("admin", "", "POST", "/compute/v2.1/flavors/tiny/os-extra_specs", map[string]any{"extra_specs": map[string]string{"hw:cpu_policy": "shared"}}); r.code != 200 {
		t.Fatalf("extra specs %d %v", r.code, r.body)
	}
	if es := obj(e.must(200, "", "GET", "/compute/v2.1/flavors/tiny/os-extra_specs", nil), "extra_specs"); es["hw:cpu_policy"] != "shared" {
		t.Errorf("extra specs %v", es)
	}
	if f := obj(e.must(200, "2.61", "GET", "/compute/v2.1/flavors/tiny", nil), "flavor"); obj(f, "extra_specs")["hw:cpu_policy"] != "shared" {
		t.Errorf("2.61 flavor %v", f)
	}
	// A server of the new flavor, by name.
	e.must(202, "", "POST", "/compute/v2.1/servers", createBody(map[string]any{"flavorRef": "tiny"}))
	if r := e.call("admin", "", "DELETE", "/compute/v2.1/flavors/tiny", nil); r.code != 202 {
		t.Fatalf("delete %d %v", r.code, r.body)
	}
	e.fault(e.call("member", "", "GET", "/compute/v2.1/flavors/tiny", nil), 404, "itemNotFound", "")
	e.fault(e.call("admin", "", "GET", "/compute/v2.1/flavors/m1.small/os-flavor-access", nil), 404, "itemNotFound", "public")
}

func TestKeyPairsAPI(t *testing.T) {
	e := newEnv(t)
	out := e.must(200, "", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "my key"}})
	kp := obj(out, "keypair")
	if !strings.Contains(kp["private_key"].(string), "PRIVATE KEY") || !strings.HasPrefix(kp["public_key"].(string), "ssh-ed25519") || kp["fingerprint"] == "" {
		t.Fatalf("generated %v", kp)
	}
	pub, _, _ := GenerateKeyPair("")
	out = e.must(201, "2.2", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "imported", "public_key": pub, "type": "ssh"}})
	if kp = obj(out, "keypair"); kp["private_key"] != nil || kp["type"] != "ssh" {
		t.Errorf("imported %v", kp)
	}
	e.fault(e.call("member", "2.92", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "gen"}}), 400, "badRequest", "public_key")
	e.fault(e.call("member", "", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "imported", "public_key": pub}}), 409, "conflictingRequest", "already exists")
	e.fault(e.call("member", "", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "x", "public_key": "ssh-rsa nonsense"}}), 400, "badRequest", "invalid")
	e.fault(e.call("member", "", "POST", "/compute/v2.1/os-keypairs", map[string]any{"keypair": map[string]any{"name": "bad/name"}}), 400, "badRequest", "")

	list := e.must(200, "2.2", "GET", "/compute/v2.1/os-keypairs", nil)["keypairs"].([]any)
	if len(list) != 2 || obj(list[0].(map[string]any), "keypair")["name"] != "imported" {
		t.Fatalf("list %v", list)
	}
	if got := obj(e.must(200, "", "GET", "/compute/v2.1/os-keypairs/my%20key", nil), "keypair"); got["name"] != "my key" || got["user_id"] != "alice-id" {
		t.Errorf("show %v", got)
	}
	// Another project does not see them.
	if l := e.call("other", "", "GET", "/compute/v2.1/os-keypairs", nil).body["keypairs"].([]any); len(l) != 0 {
		t.Errorf("other project's list %v", l)
	}
	e.fault(e.call("other", "", "GET", "/compute/v2.1/os-keypairs/imported", nil), 404, "itemNotFound", "imported")

	// A server with the key.
	id := obj(e.must(202, "", "POST", "/compute/v2.1/servers", createBody(map[string]any{"key_name": "my key"})), "server")["id"].(string)
	if vm := e.vm(id); len(vm.Spec.KeyPairs) != 1 || !strings.HasPrefix(vm.Spec.KeyPairs[0], "keypair-") {
		t.Errorf("VM keys %v", vm.Spec.KeyPairs)
	}
	if got := obj(e.must(200, "", "GET", "/compute/v2.1/servers/"+id, nil), "server"); got["key_name"] != "my key" {
		t.Errorf("key_name %v", got["key_name"])
	}
	e.must(202, "", "DELETE", "/compute/v2.1/os-keypairs/my%20key", nil)
	e.must(204, "2.2", "DELETE", "/compute/v2.1/os-keypairs/imported", nil)
	e.fault(e.call("member", "", "DELETE", "/compute/v2.1/os-keypairs/imported", nil), 404, "itemNotFound", "")
}

func TestLimitsQuotasHosts(t *testing.T) {
	e := newEnv(t)
	if err := e.c.Create(context.Background(), &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "q"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{quotaVMs: resource.MustParse("3"), "requests.cpu": resource.MustParse("4")}}}); err != nil {
		t.Fatal(err)
	}
	id := obj(e.must(202, "", "POST", "/compute/v2.1/servers", createBody(nil)), "server")["id"].(string)
	e.setStatus(id, running())
	abs := obj(obj(e.must(200, "", "GET", "/compute/v2.1/limits", nil), "limits"), "absolute")
	if abs["maxTotalInstances"] != float64(3) || abs["maxTotalCores"] != float64(4) || abs["maxTotalRAMSize"] != float64(-1) ||
		abs["totalInstancesUsed"] != float64(1) || abs["totalCoresUsed"] != float64(1) {
		t.Errorf("limits %v", abs)
	}
	qs := obj(e.must(200, "", "GET", "/compute/v2.1/os-quota-sets/p1", nil), "quota_set")
	if qs["instances"] != float64(3) || qs["ram"] != float64(-1) || qs["id"] != "p1" {
		t.Errorf("quota set %v", qs)
	}
	if d := obj(e.must(200, "", "GET", "/compute/v2.1/os-quota-sets/p1/detail", nil), "quota_set"); obj(d, "instances")["in_use"] != float64(1) {
		t.Errorf("detail %v", d)
	}
	e.fault(e.call("member", "", "GET", "/compute/v2.1/os-quota-sets/p2", nil), 403, "forbidden", "")
	if r := e.call("admin", "", "GET", "/compute/v2.1/os-quota-sets/p2", nil); r.code != 200 || obj(r.body, "quota_set")["instances"] != float64(-1) {
		t.Errorf("admin, p2: %d %v", r.code, r.body)
	}
	az := e.must(200, "", "GET", "/compute/v2.1/os-availability-zone", nil)["availabilityZoneInfo"].([]any)
	if len(az) != 1 || az[0].(map[string]any)["zoneName"] != "nova" {
		t.Errorf("zones %v", az)
	}
	e.fault(e.call("member", "", "GET", "/compute/v2.1/os-hypervisors", nil), 403, "forbidden", "")
	hv := e.call("admin", "2.53", "GET", "/compute/v2.1/os-hypervisors/detail", nil).body["hypervisors"].([]any)
	if len(hv) != 1 || hv[0].(map[string]any)["id"] != "node1-uid" || hv[0].(map[string]any)["vcpus"] != float64(4) || hv[0].(map[string]any)["state"] != "up" {
		t.Errorf("hypervisors %v", hv)
	}
	svc := e.call("admin", "", "GET", "/compute/v2.1/os-services", nil).body["services"].([]any)
	if len(svc) != 1 || svc[0].(map[string]any)["binary"] != "nova-compute" || svc[0].(map[string]any)["host"] != "node1" {
		t.Errorf("services %v", svc)
	}
}
