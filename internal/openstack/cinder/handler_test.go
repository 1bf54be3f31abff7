package cinder

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
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi/osapitest"
)

// tokens is a fake Keystone.
type tokens = osapitest.Tokens

type env struct {
	t   *testing.T
	c   client.Client
	srv *httptest.Server
}

func readyNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := func(name string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid")}}
	}
	objs := []client.Object{
		ns("p1"), ns("p2"), readyNode("node1"), readyNode("node2"),
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node0", UID: "node0-uid"}, Spec: corev1.NodeSpec{Unschedulable: true}},
		// node1 holds one volume already: new ones go to node2.
		&storagev1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "theirs", UID: "their-volume-id"},
			Spec: storagev1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: "node1"}, Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable}},
		&storagev1.Image{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "cirros", UID: "cirros-id"},
			Status: storagev1.ImageStatus{Phase: storagev1.ImageActive, VirtualSizeBytes: 2 << 30}},
		&computev1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "vm1", UID: "vm1-id"}},
		&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "q"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceRequestsStorage: resource.MustParse("100Gi"), "count/volumes.storage.strata.io": resource.MustParse("10")}}},
	}
	c := osapitest.Client(t, []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, computev1.AddToScheme, storagev1.AddToScheme}, objs, interceptor.Funcs{
		// What StrataVolumeIntegrity says of a Volume backing a bound claim.
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if v, ok := obj.(*storagev1.Volume); ok && v.Annotations[storagev1.ClaimAnnotation] != "" {
				return apierrors.NewConflict(storagev1.GroupVersion.WithResource("volumes").GroupResource(), v.Name,
					fmt.Errorf("volume %q backs PersistentVolume %s, bound to claim %s; delete the claim instead", v.Name, v.Name, v.Annotations[storagev1.ClaimAnnotation]))
			}
			return c.Delete(ctx, obj, opts...)
		},
	})
	e := &env{t: t, c: c}
	h := Handler(Config{Client: c, Authenticator: osapitest.Callers()})
	mux := http.NewServeMux()
	mux.Handle("/volume/", h)
	mux.Handle("/volume", h)
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
		mv = "volume " + mv
	}
	r := osapitest.Do(e.t, method, e.srv.URL+path, body, "X-Auth-Token", token, "OpenStack-API-Version", mv)
	return resp{r.Code, r.Body, r.Header}
}

const p1 = "/volume/v3/p1"

// must calls as member and fails unless the code is code.
func (e *env) must(code int, method, path string, body any) map[string]any {
	e.t.Helper()
	r := e.call("member", "", method, path, body)
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

func (e *env) volume(id string) *storagev1.Volume {
	e.t.Helper()
	var l storagev1.VolumeList
	if err := e.c.List(context.Background(), &l); err != nil {
		e.t.Fatal(err)
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == id {
			return &l.Items[i]
		}
	}
	return nil
}

func (e *env) snap(id string) *storagev1.VolumeSnapshot {
	e.t.Helper()
	var l storagev1.VolumeSnapshotList
	if err := e.c.List(context.Background(), &l); err != nil {
		e.t.Fatal(err)
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == id {
			return &l.Items[i]
		}
	}
	return nil
}

// setPhase plays the node agent: the volume is realised at its size.
func (e *env) setPhase(id string, phase storagev1.VolumePhase) {
	e.t.Helper()
	v := e.volume(id)
	v.Status.Phase = phase
	size := v.Spec.Size.DeepCopy()
	v.Status.Size = &size
	v.Status.Node = v.Spec.Node
	if err := e.c.Update(context.Background(), v); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) setSnapAvailable(id, size string) {
	e.t.Helper()
	s := e.snap(id)
	q := resource.MustParse(size)
	s.Status = storagev1.VolumeSnapshotStatus{Phase: storagev1.SnapshotAvailable, Size: &q, ReadyToUse: true, Node: "node2"}
	s.Labels = map[string]string{storagev1.NodeLabel: "node2"}
	if err := e.c.Update(context.Background(), s); err != nil {
		e.t.Fatal(err)
	}
}

func TestVersionsAndAuth(t *testing.T) {
	e := newEnv(t)
	r := e.call("", "", "GET", "/volume", nil)
	if r.code != http.StatusMultipleChoices || r.header.Get("X-Openstack-Request-Id") == "" {
		t.Fatalf("GET /volume: %d %v", r.code, r.header)
	}
	vs := r.body["versions"].([]any)
	if v := vs[0].(map[string]any); v["id"] != "v3.0" || v["version"] != "3.70" || v["min_version"] != "3.0" {
		t.Errorf("version doc %v", v)
	}
	for _, p := range []string{"/volume/v3", "/volume/v3/", "/volume/v3/p1"} {
		if r := e.call("", "", "GET", p, nil); r.code != 200 || r.body["versions"] == nil {
			t.Errorf("GET %s: %d %v", p, r.code, r.body)
		}
	}
	r = e.call("", "", "GET", p1+"/volumes", nil)
	if r.code != 401 || obj(r.body, "error")["code"] != float64(401) || r.header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %v", r.code, r.body)
	}
	if r := e.call("member", "3.59", "GET", p1+"/volumes", nil); r.code != 200 || r.header.Get("OpenStack-API-Version") != "volume 3.59" {
		t.Errorf("3.59: %d %v", r.code, r.header)
	}
	if r := e.call("member", "", "GET", p1+"/volumes", nil); r.header.Get("OpenStack-API-Version") != "volume 3.0" {
		t.Errorf("default microversion: %v", r.header)
	}
	e.fault(e.call("member", "3.99", "GET", p1+"/volumes", nil), 406, "computeFault", "Minimum is 3.0 and maximum is 3.70")
	e.fault(e.call("member", "3.x", "GET", p1+"/volumes", nil), 400, "badRequest", "invalid format")
	// The project in the path is the token's; 3.67's project-less form too.
	e.fault(e.call("member", "", "GET", "/volume/v3/p2/volumes", nil), 400, "badRequest", "Malformed request url")
	if r := e.call("member", "3.67", "GET", "/volume/v3/volumes", nil); r.code != 200 {
		t.Errorf("project-less: %d %v", r.code, r.body)
	}
	e.fault(e.call("noscope", "", "GET", "/volume/v3/volumes", nil), 403, "forbidden", "project-scoped")
	e.fault(e.call("member", "", "GET", p1+"/nothing-here", nil), 404, "itemNotFound", "could not be found")
	e.fault(e.call("member", "", "GET", p1+"/volumes/nope", nil), 404, "itemNotFound", "Volume nope could not be found.")
}

func TestVolumeLifecycle(t *testing.T) {
	e := newEnv(t)
	// Create: an empty 1 GiB volume named v1 on the node with fewest volumes.
	b := e.must(202, "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"size": 1, "name": "v1", "description": "d", "metadata": map[string]string{"a": "b"}}})
	v := obj(b, "volume")
	id := v["id"].(string)
	if v["status"] != "creating" || v["size"] != float64(1) || v["name"] != "v1" || v["volume_type"] != "__DEFAULT__" || v["availability_zone"] != "nova" || obj(v, "metadata")["a"] != "b" {
		t.Errorf("created %v", v)
	}
	vol := e.volume(id)
	if vol == nil || vol.Name != "v1" || vol.Namespace != "p1" || vol.Spec.Node != "node2" || vol.Spec.Format != storagev1.FormatRaw ||
		vol.Spec.VolumeMode != storagev1.VolumeBlock || vol.Spec.Size.String() != "1Gi" || vol.Labels[storagev1.NodeLabel] != "node2" {
		t.Fatalf("Volume %+v", vol)
	}
	if _, ok := vol.Annotations[AnnotationName]; ok {
		t.Errorf("a DNS-label name needs no annotation: %v", vol.Annotations)
	}
	// The node has not realised it: extend and snapshot are refused.
	e.fault(e.call("member", "", "POST", p1+"/volumes/"+id+"/action", map[string]any{"os-extend": map[string]any{"new_size": 2}}), 400, "badRequest", "Invalid volume")
	e.fault(e.call("member", "", "POST", p1+"/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": id}}), 400, "badRequest", "Invalid volume")
	e.setPhase(id, storagev1.VolumeAvailable)
	v = obj(e.must(200, "GET", p1+"/volumes/"+id, nil), "volume")
	if v["status"] != "available" || v["bootable"] != "false" || v["os-vol-tenant-attr:tenant_id"] != "p1" || v["user_id"] != "alice-id" {
		t.Errorf("show %v", v)
	}
	if _, ok := v["os-vol-host-attr:host"]; ok {
		t.Errorf("a member sees the host: %v", v)
	}
	if h := obj(e.call("admin", "", "GET", p1+"/volumes/"+id, nil).body, "volume")["os-vol-host-attr:host"]; h != "node2@file#file" {
		t.Errorf("admin's host %v", h)
	}

	// A second volume with a name that is no DNS label; a third with v1's name.
	v2 := obj(e.must(202, "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"size": "3", "name": "My Volume", "volume_type": "qcow2"}}), "volume")
	vol2 := e.volume(v2["id"].(string))
	if !strings.HasPrefix(vol2.Name, "vol-") || vol2.Annotations[AnnotationName] != "My Volume" || vol2.Spec.Format != storagev1.FormatQCOW2 || v2["volume_type"] != "qcow2" {
		t.Errorf("volume 2 %s %v %v", vol2.Name, vol2.Annotations, v2)
	}
	v3 := obj(e.must(202, "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"size": 1, "name": "v1"}}), "volume")
	if vol3 := e.volume(v3["id"].(string)); vol3.Name == "v1" || DisplayName(vol3) != "v1" {
		t.Errorf("volume 3 %s %v", vol3.Name, vol3.Annotations)
	}

	// List: summaries, details, filters, sort, pages.
	l := e.must(200, "GET", p1+"/volumes", nil)["volumes"].([]any)
	if len(l) != 3 || l[0].(map[string]any)["links"] == nil {
		t.Fatalf("list %v", l)
	}
	l = e.must(200, "GET", p1+"/volumes/detail?name=v1&all_tenants=1", nil)["volumes"].([]any)
	if len(l) != 2 {
		t.Errorf("name=v1: %v", l)
	}
	l = e.must(200, "GET", p1+"/volumes/detail?status=available", nil)["volumes"].([]any)
	if len(l) != 1 || l[0].(map[string]any)["id"] != id {
		t.Errorf("status=available: %v", l)
	}
	l = e.must(200, "GET", p1+"/volumes/detail?sort=size:desc", nil)["volumes"].([]any)
	if l[0].(map[string]any)["size"] != float64(3) {
		t.Errorf("sort=size:desc: %v", l[0])
	}
	page := e.must(200, "GET", p1+"/volumes?limit=2&sort=name:asc", nil)
	if len(page["volumes"].([]any)) != 2 || page["volumes_links"] == nil {
		t.Fatalf("page 1 %v", page)
	}
	last := page["volumes"].([]any)[1].(map[string]any)["id"].(string)
	page = e.must(200, "GET", p1+"/volumes?limit=2&sort=name:asc&marker="+last, nil)
	if len(page["volumes"].([]any)) != 1 || page["volumes_links"] != nil {
		t.Errorf("page 2 %v", page)
	}
	e.fault(e.call("member", "", "GET", p1+"/volumes?marker=nope", nil), 400, "badRequest", "Marker nope could not be found")
	if r := e.call("member", "3.45", "GET", p1+"/volumes?with_count=true&limit=1", nil); r.body["count"] != float64(3) {
		t.Errorf("with_count %v", r.body)
	}

	// Update; metadata; bootable.
	v = obj(e.must(200, "PUT", p1+"/volumes/"+id, map[string]any{"volume": map[string]any{"name": "renamed", "description": "new"}}), "volume")
	if v["name"] != "renamed" || v["description"] != "new" || e.volume(id).Name != "v1" {
		t.Errorf("update %v", v)
	}
	e.must(200, "POST", p1+"/volumes/"+id+"/metadata", map[string]any{"metadata": map[string]string{"c": "d"}})
	md := e.must(200, "GET", p1+"/volumes/"+id+"/metadata", nil)["metadata"].(map[string]any)
	if md["a"] != "b" || md["c"] != "d" {
		t.Errorf("metadata %v", md)
	}
	e.must(200, "DELETE", p1+"/volumes/"+id+"/metadata/a", nil)
	e.fault(e.call("member", "", "DELETE", p1+"/volumes/"+id+"/metadata/a", nil), 404, "itemNotFound", "Metadata")
	e.must(200, "POST", p1+"/volumes/"+id+"/action", map[string]any{"os-set_bootable": map[string]any{"bootable": true}})
	if v = obj(e.must(200, "GET", p1+"/volumes/"+id, nil), "volume"); v["bootable"] != "true" || len(v["metadata"].(map[string]any)) != 1 {
		t.Errorf("after metadata/bootable %v", v)
	}

	// Extend.
	e.fault(e.call("member", "", "POST", p1+"/volumes/"+id+"/action", map[string]any{"os-extend": map[string]any{"new_size": 1}}), 400, "badRequest", "must be greater than current size")
	e.must(202, "POST", p1+"/volumes/"+id+"/action", map[string]any{"os-extend": map[string]any{"new_size": 2}})
	if got := e.volume(id).Spec.Size.String(); got != "2Gi" {
		t.Errorf("extended to %s", got)
	}
	if v = obj(e.must(200, "GET", p1+"/volumes/"+id, nil), "volume"); v["status"] != "extending" || v["size"] != float64(2) {
		t.Errorf("while extending %v", v)
	}
	e.setPhase(id, storagev1.VolumeAvailable)

	// Snapshot; the volume cannot go while it has one.
	s := obj(e.must(202, "POST", p1+"/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": id, "name": "s1", "force": false}}), "snapshot")
	sid := s["id"].(string)
	if s["status"] != "creating" || s["volume_id"] != id || s["size"] != float64(2) || s["name"] != "s1" || s["metadata"] == nil {
		t.Errorf("snapshot %v", s)
	}
	if so := e.snap(sid); so == nil || so.Name != "s1" || so.Spec.Volume != "v1" {
		t.Fatalf("VolumeSnapshot %+v", so)
	}
	e.fault(e.call("member", "", "DELETE", p1+"/volumes/"+id, nil), 400, "badRequest", "Invalid volume: Volume still has 1 dependent snapshots.")
	// A volume from it waits for it to be available, and is not smaller.
	e.fault(e.call("member", "", "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"snapshot_id": sid}}), 400, "badRequest", "Invalid snapshot")
	e.setSnapAvailable(sid, "2Gi")
	e.fault(e.call("member", "", "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"snapshot_id": sid, "size": 1}}), 400, "badRequest", "snapshot size 2GB")
	v4 := obj(e.must(202, "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"snapshot_id": sid, "name": "v4"}}), "volume")
	if vol4 := e.volume(v4["id"].(string)); vol4.Spec.Source == nil || vol4.Spec.Source.Snapshot != "s1" || vol4.Spec.Size.String() != "2Gi" || vol4.Spec.Node != "node2" || v4["snapshot_id"] != sid {
		t.Errorf("from snapshot %+v %v", vol4.Spec, v4)
	}
	sl := e.must(200, "GET", p1+"/snapshots/detail?volume_id="+id, nil)["snapshots"].([]any)
	if len(sl) != 1 || sl[0].(map[string]any)["status"] != "available" || sl[0].(map[string]any)["os-extended-snapshot-attributes:progress"] != "100%" {
		t.Errorf("snapshots %v", sl)
	}
	s = obj(e.must(200, "PUT", p1+"/snapshots/"+sid, map[string]any{"snapshot": map[string]any{"description": "x"}}), "snapshot")
	if s["description"] != "x" {
		t.Errorf("snapshot update %v", s)
	}
	// Another project sees none of it.
	e.fault(e.call("other", "", "GET", "/volume/v3/p2/volumes/"+id, nil), 404, "itemNotFound", "could not be found")
	e.fault(e.call("other", "", "GET", "/volume/v3/p2/snapshots/"+sid, nil), 404, "itemNotFound", "could not be found")
	e.fault(e.call("other", "", "DELETE", "/volume/v3/p2/volumes/"+id, nil), 404, "itemNotFound", "could not be found")
	if l := e.call("other", "", "GET", "/volume/v3/p2/volumes/detail?name=v1&all_tenants=1", nil).body["volumes"].([]any); len(l) != 0 {
		t.Errorf("other's list %v", l)
	}
	// Cascade deletes the snapshots with the volume.
	e.must(202, "DELETE", p1+"/snapshots/"+sid, nil)
	if e.snap(sid) != nil {
		t.Error("snapshot not deleted")
	}
	e.must(202, "DELETE", p1+"/volumes/"+id, nil)
	if e.volume(id) != nil {
		t.Error("volume not deleted")
	}
	e.setPhase(v4["id"].(string), storagev1.VolumeAvailable)
	s5 := obj(e.must(202, "POST", p1+"/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": v4["id"]}}), "snapshot")
	if s5["name"] != nil || !strings.HasPrefix(e.snap(s5["id"].(string)).Name, "snap-") {
		t.Errorf("unnamed snapshot %v", s5)
	}
}

func TestVolumeCreateErrors(t *testing.T) {
	e := newEnv(t)
	post := func(token string, body any) resp { return e.call(token, "", "POST", p1+"/volumes", body) }
	e.fault(post("member", `{"volume": `), 400, "badRequest", "Malformed request body")
	e.fault(post("member", map[string]any{"volum": map[string]any{}}), 400, "badRequest", "'volume' is a required property")
	e.fault(post("member", map[string]any{"volume": map[string]any{"name": "x"}}), 400, "badRequest", "'size' is a required property")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 0}}), 400, "badRequest", "size")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": "big"}}), 400, "badRequest", "size")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 1, "volume_type": "ssd"}}), 404, "itemNotFound", "Volume type with name ssd could not be found.")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 1, "availability_zone": "az9"}}), 400, "badRequest", "Availability zone 'az9' is invalid")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 1, "snapshot_id": "nope"}}), 404, "itemNotFound", "Snapshot nope could not be found.")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 1, "source_volid": "their-volume-id"}}), 404, "itemNotFound", "Volume their-volume-id could not be found.")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 1, "imageRef": "cirros-id"}}), 400, "badRequest", "Size of specified image cirros-id is 2GB")
	e.fault(post("member", map[string]any{"volume": map[string]any{"size": 2, "imageRef": "their-image-id"}}), 404, "itemNotFound", "Image their-image-id")
	e.fault(post("reader", map[string]any{"volume": map[string]any{"size": 1}}), 403, "forbidden", "member role")
	v := obj(post("member", map[string]any{"volume": map[string]any{"size": 2, "imageRef": "cirros-id"}}).body, "volume")
	if v["bootable"] != "true" || obj(v, "volume_image_metadata")["image_id"] != "cirros-id" {
		t.Errorf("from image %v", v)
	}
	if vol := e.volume(v["id"].(string)); vol.Spec.Source == nil || vol.Spec.Source.Image != "cirros" {
		t.Errorf("from image %+v", vol.Spec)
	}
	// A clone of it (the node has realised it).
	e.setPhase(v["id"].(string), storagev1.VolumeAvailable)
	c := obj(post("member", map[string]any{"volume": map[string]any{"source_volid": v["id"]}}).body, "volume")
	if vol := e.volume(c["id"].(string)); vol.Spec.Source.Volume == "" || vol.Spec.Size.String() != "2Gi" || c["source_volid"] != v["id"] {
		t.Errorf("clone %+v %v", vol.Spec, c)
	}
	e.fault(e.call("member", "", "POST", p1+"/volumes/"+c["id"].(string)+"/action", map[string]any{"os-frobnicate": nil}), 400, "badRequest", "no such action")
	e.fault(e.call("member", "", "POST", p1+"/volumes/"+c["id"].(string)+"/action", map[string]any{"os-reset_status": map[string]any{"status": "available"}}), 501, "notImplemented", "os-reset_status")
}

func TestDeleteRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vols := []*storagev1.Volume{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "used", UID: "used-id"}, Spec: storagev1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: "node1"},
			Status: storagev1.VolumeStatus{Phase: storagev1.VolumeInUse, Attachments: []storagev1.VolumeAttachment{{Kind: "VirtualMachine", Name: "vm1", Node: "node1", Device: "/dev/vdb"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: "pvc-1", UID: "pvc-id", Annotations: map[string]string{storagev1.ClaimAnnotation: "p1/data"}},
			Spec: storagev1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: "node1"}, Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable}},
	}
	for _, v := range vols {
		if err := e.c.Create(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	v := obj(e.must(200, "GET", p1+"/volumes/used-id", nil), "volume")
	at := v["attachments"].([]any)
	if v["status"] != "in-use" || len(at) != 1 || at[0].(map[string]any)["server_id"] != "vm1-id" || at[0].(map[string]any)["device"] != "/dev/vdb" {
		t.Errorf("attached %v", v)
	}
	e.fault(e.call("member", "", "DELETE", p1+"/volumes/used-id", nil), 400, "badRequest", "Invalid volume: Volume status must be available")
	e.fault(e.call("member", "", "POST", p1+"/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": "used-id"}}), 400, "badRequest", "force")
	e.must(202, "POST", p1+"/snapshots", map[string]any{"snapshot": map[string]any{"volume_id": "used-id", "force": "true"}})
	// The admission plugin's 409 becomes Cinder's 400.
	e.fault(e.call("member", "", "DELETE", p1+"/volumes/pvc-id", nil), 400, "badRequest", `Invalid volume: volume "pvc-1" backs PersistentVolume`)
	if r := e.call("member", "", "GET", p1+"/volumes/pvc-id", nil); obj(r.body, "volume")["name"] != "pvc-1" {
		t.Errorf("a claim's volume %v", r.body)
	}
}

func TestResources(t *testing.T) {
	e := newEnv(t)
	e.must(202, "POST", p1+"/volumes", map[string]any{"volume": map[string]any{"size": 5}})
	abs := obj(obj(e.must(200, "GET", p1+"/limits", nil), "limits"), "absolute")
	if abs["maxTotalVolumeGigabytes"] != float64(100) || abs["maxTotalVolumes"] != float64(10) || abs["maxTotalSnapshots"] != float64(-1) ||
		abs["totalGigabytesUsed"] != float64(5) || abs["totalVolumesUsed"] != float64(1) {
		t.Errorf("limits %v", abs)
	}
	qs := obj(e.must(200, "GET", p1+"/os-quota-sets/p1?usage=true", nil), "quota_set")
	if obj(qs, "gigabytes")["limit"] != float64(100) || obj(qs, "gigabytes")["in_use"] != float64(5) {
		t.Errorf("quota usage %v", qs)
	}
	if qs := obj(e.must(200, "GET", p1+"/os-quota-sets/p1", nil), "quota_set"); qs["volumes"] != float64(10) || qs["id"] != "p1" {
		t.Errorf("quota %v", qs)
	}
	e.fault(e.call("member", "", "GET", p1+"/os-quota-sets/p2", nil), 403, "forbidden", "quotas:show")
	if r := e.call("admin", "", "GET", p1+"/os-quota-sets/p2", nil); r.code != 200 || obj(r.body, "quota_set")["volumes"] != float64(-1) {
		t.Errorf("admin's view of p2 %d %v", r.code, r.body)
	}
	e.fault(e.call("admin", "", "GET", p1+"/os-quota-sets/p9", nil), 404, "itemNotFound", "Project p9")
	types := e.must(200, "GET", p1+"/types", nil)["volume_types"].([]any)
	if len(types) != 2 || types[0].(map[string]any)["name"] != "__DEFAULT__" {
		t.Errorf("types %v", types)
	}
	if d := obj(e.must(200, "GET", p1+"/types/default", nil), "volume_type"); d["id"] != DefaultType.ID {
		t.Errorf("default type %v", d)
	}
	if d := obj(e.must(200, "GET", p1+"/types/qcow2", nil), "volume_type"); d["id"] != QCOW2Type.ID {
		t.Errorf("qcow2 type %v", d)
	}
	e.fault(e.call("member", "", "GET", p1+"/types/ssd", nil), 404, "itemNotFound", "Volume type ssd")
	e.fault(e.call("member", "", "POST", p1+"/types", map[string]any{"volume_type": map[string]any{"name": "x"}}), 403, "forbidden", "admin")
	az := e.must(200, "GET", p1+"/os-availability-zone", nil)["availabilityZoneInfo"].([]any)
	if len(az) != 1 || az[0].(map[string]any)["zoneName"] != "nova" {
		t.Errorf("zones %v", az)
	}
	if ex := e.must(200, "GET", p1+"/extensions", nil)["extensions"].([]any); len(ex) == 0 {
		t.Error("no extensions")
	}
	e.fault(e.call("member", "", "GET", p1+"/os-services", nil), 403, "forbidden", "admin")
	svcs := e.call("admin", "", "GET", p1+"/os-services?binary=cinder-volume", nil).body["services"].([]any)
	if len(svcs) != 3 || svcs[0].(map[string]any)["host"] != "node0@file" || svcs[0].(map[string]any)["status"] != "disabled" || svcs[1].(map[string]any)["state"] != "up" {
		t.Errorf("services %v", svcs)
	}
}

// A quota refusal from the API server is Cinder's 413.
func TestQuotaExceeded(t *testing.T) {
	err := apierrors.NewForbidden(storagev1.GroupVersion.WithResource("volumes").GroupResource(), "v",
		errors.New("exceeded quota: q, requested: count/volumes.storage.strata.io=1, used: count/volumes.storage.strata.io=10, limited: count/volumes.storage.strata.io=10"))
	if e := ToError(err); e.Code != 413 || FaultName(e.Code) != "overLimit" || !strings.Contains(e.Message, "exceeded quota") {
		t.Errorf("%+v", e)
	}
}
