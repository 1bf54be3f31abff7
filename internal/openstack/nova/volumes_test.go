package nova

import (
	"context"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// addVolume makes a Volume of project ns with that UID, on node, in phase.
func (e *env) addVolume(ns, name, uid, node string, phase storagev1.VolumePhase, mutate func(*storagev1.Volume)) {
	e.t.Helper()
	v := &storagev1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec:   storagev1.VolumeSpec{Size: resource.MustParse("1Gi"), Node: node},
		Status: storagev1.VolumeStatus{Phase: phase, Node: node}}
	if mutate != nil {
		mutate(v)
	}
	if err := e.c.Create(context.Background(), v); err != nil { // no status subresource here: status is kept
		e.t.Fatal(err)
	}
}

func (e *env) volume(ns, name string) *storagev1.Volume {
	e.t.Helper()
	v := &storagev1.Volume{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, v); err != nil {
		e.t.Fatal(err)
	}
	return v
}

func TestVolumeAttachments(t *testing.T) {
	e := newEnv(t)
	e.addVolume("p1", "data", "data-id", "node1", storagev1.VolumeAvailable, nil)
	e.addVolume("p1", "data2", "data2-id", "node1", storagev1.VolumeAvailable, nil)
	e.addVolume("p1", "far", "far-id", "node2", storagev1.VolumeAvailable, nil)
	e.addVolume("p1", "busy", "busy-id", "node1", storagev1.VolumeInUse, func(v *storagev1.Volume) {
		v.Status.Attachments = []storagev1.VolumeAttachment{{Kind: "VirtualMachine", Name: "other", Node: "node1", Device: "/dev/vdc"}}
	})
	e.addVolume("p1", "new", "new-id", "", storagev1.VolumeCreating, nil)
	e.addVolume("p2", "theirs", "theirs-vol-id", "node1", storagev1.VolumeAvailable, nil)
	id := obj(e.must(202, "2.79", "POST", "/compute/v2.1/servers", createBody(map[string]any{"networks": "auto"})), "server")["id"].(string)
	e.setStatus(id, running())
	base := "/compute/v2.1/servers/" + id + "/os-volume_attachments"

	if l := e.must(200, "", "GET", base, nil)["volumeAttachments"].([]any); len(l) != 0 {
		t.Fatalf("attachments of a new server: %v", l)
	}
	// Attach at 2.79 with delete_on_termination.
	a := obj(e.must(200, "2.79", "POST", base, map[string]any{"volumeAttachment": map[string]any{
		"volumeId": "data-id", "device": "/dev/vdz", "delete_on_termination": true}}), "volumeAttachment")
	if a["id"] != "data-id" || a["volumeId"] != "data-id" || a["serverId"] != id || a["device"] != "/dev/vdc" || a["delete_on_termination"] != true || a["tag"] != nil {
		t.Errorf("attach answer %v", a)
	}
	vm := e.vm(id)
	if len(vm.Spec.Volumes) != 1 || vm.Spec.Volumes[0].Volume != "data" {
		t.Fatalf("spec.volumes %v", vm.Spec.Volumes)
	}
	if v := e.volume("p1", "data"); len(v.OwnerReferences) != 1 || string(v.OwnerReferences[0].UID) != id {
		t.Errorf("owner of a delete_on_termination volume: %v", v.OwnerReferences)
	}
	// delete_on_termination before 2.79 is refused; at 2.1 a plain attach.
	e.fault(e.call("member", "2.60", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "data2-id", "delete_on_termination": true}}), 400, "badRequest", "delete_on_termination")
	a = obj(e.must(200, "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "data2-id"}}), "volumeAttachment")
	if _, ok := a["delete_on_termination"]; ok || a["volumeId"] != "data2-id" {
		t.Errorf("2.1 attach answer %v", a)
	}
	// Refusals.
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "data-id"}}), 409, "conflictingRequest", "already attached")
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "busy-id"}}), 409, "conflictingRequest", "virtualmachine other")
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "theirs-vol-id"}}), 404, "itemNotFound", "theirs-vol-id")
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "far-id"}}), 400, "badRequest", "on node node2 but server")
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "new-id"}}), 400, "badRequest", "status must be available")
	e.fault(e.call("member", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{}}), 400, "badRequest", "volumeId")
	e.fault(e.call("reader", "", "POST", base, map[string]any{"volumeAttachment": map[string]any{"volumeId": "data2-id"}}), 403, "forbidden", "")
	e.fault(e.call("other", "", "GET", base, nil), 404, "itemNotFound", "")

	// The launcher reports the volumes.
	st := running()
	st.Volumes = []computev1.VirtualMachineVolumeStatus{{Volume: "data", Phase: computev1.VolumeAttached, Target: "vdc"}, {Volume: "data2", Phase: computev1.VolumeAttaching}}
	e.setStatus(id, st)
	l := e.must(200, "2.79", "GET", base, nil)["volumeAttachments"].([]any)
	if len(l) != 2 || l[0].(map[string]any)["device"] != "/dev/vdc" || l[1].(map[string]any)["device"] != nil || l[0].(map[string]any)["delete_on_termination"] != true || l[1].(map[string]any)["delete_on_termination"] != false {
		t.Errorf("list at 2.79 %v", l)
	}
	a = obj(e.must(200, "2.89", "GET", base+"/data-id", nil), "volumeAttachment")
	if _, ok := a["id"]; ok || a["attachment_id"] == nil || a["bdm_uuid"] == nil || a["tag"] != nil || a["volumeId"] != "data-id" {
		t.Errorf("show at 2.89 %v", a)
	}
	e.fault(e.call("member", "", "GET", base+"/far-id", nil), 404, "itemNotFound", "not attached")
	// The server shows its volumes.
	s := obj(e.must(200, "2.79", "GET", "/compute/v2.1/servers/"+id, nil), "server")
	va := s["os-extended-volumes:volumes_attached"].([]any)
	if len(va) != 2 || va[0].(map[string]any)["id"] != "data-id" || va[0].(map[string]any)["delete_on_termination"] != true {
		t.Errorf("volumes_attached %v", va)
	}
	// Detach: 202, spec.volumes drops it, the volume no longer goes with the server.
	e.must(202, "", "DELETE", base+"/data-id", nil)
	if vm := e.vm(id); len(vm.Spec.Volumes) != 1 || vm.Spec.Volumes[0].Volume != "data2" {
		t.Errorf("spec.volumes after detach %v", vm.Spec.Volumes)
	}
	if v := e.volume("p1", "data"); len(v.OwnerReferences) != 0 {
		t.Errorf("owner after detach %v", v.OwnerReferences)
	}
	// Still detaching: listed until the launcher lets go.
	st.Volumes[0].Phase = computev1.VolumeDetaching
	e.setStatus(id, st)
	if l := e.must(200, "", "GET", base, nil)["volumeAttachments"].([]any); len(l) != 2 {
		t.Errorf("list while detaching %v", l)
	}
	e.fault(e.call("member", "", "DELETE", base+"/far-id", nil), 404, "itemNotFound", "not attached")
	e.fault(e.call("member", "", "DELETE", base+"/nope", nil), 404, "itemNotFound", "could not be found")
	e.fault(e.call("member", "", "PUT", base+"/data2-id", map[string]any{"volumeAttachment": map[string]any{"volumeId": "data-id"}}), 501, "notImplemented", "")
}

func TestBootFromVolume(t *testing.T) {
	e := newEnv(t)
	e.addVolume("p1", "root", "root-id", "node1", storagev1.VolumeAvailable, func(v *storagev1.Volume) {
		v.Spec.Source = &storagev1.VolumeSource{Image: "cirros"}
	})
	e.addVolume("p1", "data", "data-id", "node1", storagev1.VolumeAvailable, nil)
	e.addVolume("p1", "plain", "plain-id", "node1", storagev1.VolumeAvailable, nil)
	e.addVolume("p1", "far", "far-id", "node2", storagev1.VolumeAvailable, nil)
	bdm := func(entries ...map[string]any) map[string]any {
		return createBody(map[string]any{"name": "bfv", "imageRef": "", "networks": "auto", "block_device_mapping_v2": entries})
	}
	vol := func(id string, boot int, dot bool) map[string]any {
		return map[string]any{"source_type": "volume", "destination_type": "volume", "uuid": id, "boot_index": boot, "delete_on_termination": dot}
	}
	// Refusals first: nothing is made.
	e.fault(e.call("member", "2.79", "POST", "/compute/v2.1/servers", bdm(vol("nope", 0, false))), 400, "badRequest", "failed to get volume nope")
	e.fault(e.call("member", "2.79", "POST", "/compute/v2.1/servers", bdm(vol("plain-id", 0, false))), 400, "badRequest", "not bootable")
	e.fault(e.call("member", "2.79", "POST", "/compute/v2.1/servers", bdm(vol("root-id", 0, false), vol("far-id", -1, false))), 400, "badRequest", "on one node")
	e.fault(e.call("member", "2.79", "POST", "/compute/v2.1/servers", bdm(map[string]any{"source_type": "image", "destination_type": "volume", "uuid": "nope", "boot_index": 0, "volume_size": 1})), 400, "badRequest", "Image nope could not be found")

	id := obj(e.must(202, "2.79", "POST", "/compute/v2.1/servers", bdm(vol("root-id", 0, false), vol("data-id", -1, true))), "server")["id"].(string)
	vm := e.vm(id)
	if vm.Spec.Image != "" || vm.Spec.RootVolume != "root" || len(vm.Spec.Volumes) != 1 || vm.Spec.Volumes[0].Volume != "data" {
		t.Fatalf("spec %+v", vm.Spec)
	}
	if v := e.volume("p1", "data"); len(v.OwnerReferences) != 1 || string(v.OwnerReferences[0].UID) != id {
		t.Errorf("data's owners %v", v.OwnerReferences)
	}
	if v := e.volume("p1", "root"); len(v.OwnerReferences) != 0 {
		t.Errorf("root's owners %v", v.OwnerReferences)
	}
	e.setStatus(id, running())
	s := obj(e.must(200, "2.79", "GET", "/compute/v2.1/servers/"+id, nil), "server")
	va := s["os-extended-volumes:volumes_attached"].([]any)
	if s["image"] != "" || len(va) != 2 || va[0].(map[string]any)["id"] != "root-id" || va[0].(map[string]any)["delete_on_termination"] != false || va[1].(map[string]any)["delete_on_termination"] != true {
		t.Errorf("server image %v volumes %v", s["image"], va)
	}
	base := "/compute/v2.1/servers/" + id + "/os-volume_attachments"
	l := e.must(200, "", "GET", base, nil)["volumeAttachments"].([]any)
	if len(l) != 2 || l[0].(map[string]any)["device"] != "/dev/vda" {
		t.Errorf("attachments %v", l)
	}
	e.fault(e.call("member", "", "DELETE", base+"/root-id", nil), 400, "badRequest", "root device")
	// The root volume is taken now.
	e.fault(e.call("member", "2.79", "POST", "/compute/v2.1/servers", bdm(vol("root-id", 0, false))), 400, "badRequest", "attached to server")

	// openstack server create --boot-from-volume 3 --image cirros: a new Volume from the Image.
	id2 := obj(e.must(202, "2.79", "POST", "/compute/v2.1/servers", createBody(map[string]any{"name": "bfv2", "imageRef": "", "networks": "auto",
		"block_device_mapping_v2": []any{map[string]any{"uuid": "cirros-id", "boot_index": "0", "source_type": "image", "destination_type": "volume",
			"volume_size": 3, "delete_on_termination": true}}})), "server")["id"].(string)
	vm2 := e.vm(id2)
	if vm2.Spec.Image != "" || vm2.Spec.RootVolume != "bfv2-root" {
		t.Fatalf("spec %+v", vm2.Spec)
	}
	nv := e.volume("p1", "bfv2-root")
	if nv.Spec.Source == nil || nv.Spec.Source.Image != "cirros" || nv.Spec.Size.Cmp(resource.MustParse("3Gi")) != 0 || nv.Spec.Node != "node1" ||
		len(nv.OwnerReferences) != 1 || string(nv.OwnerReferences[0].UID) != id2 || nv.Annotations["storage.strata.io/user-id"] != "alice-id" {
		t.Errorf("new root volume %+v", nv)
	}
}
