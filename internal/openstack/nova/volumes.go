package nova

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/cinder"
)

// maxVolumes is how many volumes a VM takes (spec.volumes' MaxItems).
const maxVolumes = 16

// VolumeAttachment is one volume of a server, as os-volume_attachments
// shows it.
type VolumeAttachment struct {
	VolumeID, ServerID  string
	Device              string // "" while unknown
	DeleteOnTermination bool
	Root                bool
	// AttachmentID is the ID Cinder gives the same attachment.
	AttachmentID string
}

// ownedBy reports whether v goes with the VM of that UID (Nova's
// delete_on_termination).
func ownedBy(v *storagev1.Volume, vmUID string) bool {
	for _, o := range v.OwnerReferences {
		if string(o.UID) == vmUID && o.Kind == "VirtualMachine" {
			return true
		}
	}
	return false
}

// ServerVolumes are vm's volumes as Nova attachments: the root volume
// first (/dev/vda), then spec.volumes in order, then volumes the VM is
// still detaching. vols are the namespace's Volumes by name; a volume
// that is gone is left out (it has no ID any more).
func ServerVolumes(vm *computev1.VirtualMachine, vols map[string]*storagev1.Volume) []VolumeAttachment {
	vmID := string(vm.UID)
	status := map[string]computev1.VirtualMachineVolumeStatus{}
	for _, s := range vm.Status.Volumes {
		status[s.Volume] = s
	}
	att := func(name string) (VolumeAttachment, bool) {
		v := vols[name]
		if v == nil {
			return VolumeAttachment{}, false
		}
		a := VolumeAttachment{VolumeID: string(v.UID), ServerID: vmID, DeleteOnTermination: ownedBy(v, vmID),
			AttachmentID: cinder.AttachmentID(string(v.UID), storagev1.VolumeAttachment{Kind: "VirtualMachine", Name: vm.Name})}
		if s, ok := status[name]; ok && s.Target != "" {
			a.Device = "/dev/" + s.Target
		} else {
			for _, va := range v.Status.Attachments {
				if va.Kind == "VirtualMachine" && va.Name == vm.Name {
					a.Device = va.Device
				}
			}
		}
		return a, true
	}
	var out []VolumeAttachment
	seen := map[string]bool{}
	if vm.Spec.RootVolume != "" {
		if a, ok := att(vm.Spec.RootVolume); ok {
			a.Root, a.Device = true, "/dev/vda"
			out = append(out, a)
		}
		seen[vm.Spec.RootVolume] = true
	}
	for _, sv := range vm.Spec.Volumes {
		if seen[sv.Volume] {
			continue
		}
		seen[sv.Volume] = true
		if a, ok := att(sv.Volume); ok {
			out = append(out, a)
		}
	}
	for _, s := range vm.Status.Volumes {
		if seen[s.Volume] || s.Phase != computev1.VolumeDetaching {
			continue
		}
		seen[s.Volume] = true
		if a, ok := att(s.Volume); ok {
			out = append(out, a)
		}
	}
	return out
}

// bdmUUID is the stable ID of a server's block device mapping.
func bdmUUID(serverID, volumeID string) string {
	sum := sha256.Sum256([]byte("bdm/" + serverID + "/" + volumeID))
	h := hex.EncodeToString(sum[:16])
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-b" + h[17:20] + "-" + h[20:32]
}

// VolumeAttachmentToNova is an attachment's body at microversion mv: tag
// from 2.70, delete_on_termination from 2.79, attachment_id and bdm_uuid
// instead of id from 2.89 (list and show; create keeps id).
func VolumeAttachmentToNova(a VolumeAttachment, mv Microversion, created bool) map[string]any {
	out := map[string]any{"id": a.VolumeID, "volumeId": a.VolumeID, "serverId": a.ServerID, "device": nilIfEmpty(a.Device)}
	if mv.AtLeast(70) {
		out["tag"] = nil
	}
	if mv.AtLeast(79) {
		out["delete_on_termination"] = a.DeleteOnTermination
	}
	if mv.AtLeast(89) && !created {
		delete(out, "id")
		out["attachment_id"] = a.AttachmentID
		out["bdm_uuid"] = bdmUUID(a.ServerID, a.VolumeID)
	}
	return out
}

// VolumesAttached is a server's os-extended-volumes:volumes_attached
// (delete_on_termination from 2.3).
func VolumesAttached(atts []VolumeAttachment, mv Microversion) []any {
	out := []any{}
	for _, a := range atts {
		e := map[string]any{"id": a.VolumeID}
		if mv.AtLeast(3) {
			e["delete_on_termination"] = a.DeleteOnTermination
		}
		out = append(out, e)
	}
	return out
}

// AttachCheck says whether v may be attached to vm: not already attached
// (to vm or anything else, as v's attachments or another VM's spec tell),
// Cinder status available, on vm's node (or its other volumes'), and
// room for one more.
func AttachCheck(vm *computev1.VirtualMachine, v *storagev1.Volume, vms []computev1.VirtualMachine, vols map[string]*storagev1.Volume) error {
	id := string(v.UID)
	if vm.Spec.RootVolume == v.Name || slices.ContainsFunc(vm.Spec.Volumes, func(x computev1.VirtualMachineVolume) bool { return x.Volume == v.Name }) {
		return conflict("Volume %s is already attached to server %s.", id, vm.UID)
	}
	for _, a := range v.Status.Attachments {
		if a.Kind == "VirtualMachine" && a.Name == vm.Name {
			return conflict("Volume %s is still being detached from server %s; try again when it is available.", id, vm.UID)
		}
		return conflict("Volume %s is in use: attached to %s %s.", id, strings.ToLower(a.Kind), a.Name)
	}
	for i := range vms {
		o := &vms[i]
		if o.UID == vm.UID {
			continue
		}
		if o.Spec.RootVolume == v.Name || slices.ContainsFunc(o.Spec.Volumes, func(x computev1.VirtualMachineVolume) bool { return x.Volume == v.Name }) {
			return conflict("Volume %s is in use: attached to server %s.", id, o.UID)
		}
	}
	if st := cinder.VolumeStatus(v); st != "available" {
		return badRequest("Invalid volume: volume %s status must be available, not %s.", id, st)
	}
	if len(vm.Spec.Volumes) >= maxVolumes {
		return &Error{Code: http.StatusForbidden, Message: fmt.Sprintf("The maximum allowed number of disk devices (%d) to attach to a single instance has been exceeded.", maxVolumes)}
	}
	node := v.NodeName()
	if node == "" {
		return nil
	}
	if vm.Status.NodeName != "" && vm.Status.NodeName != node {
		return badRequest("Volume %s is on node %s but server %s runs on node %s: a volume can only be attached to a server on its own node.", id, node, vm.UID, vm.Status.NodeName)
	}
	names := append([]string{vm.Spec.RootVolume}, volumeNames(vm.Spec.Volumes)...)
	for _, n := range names {
		if o := vols[n]; o != nil && o.NodeName() != "" && o.NodeName() != node {
			return badRequest("Volume %s is on node %s but volume %s of server %s is on node %s: a server's volumes must all be on one node.", id, node, o.UID, vm.UID, o.NodeName())
		}
	}
	return nil
}

func volumeNames(vs []computev1.VirtualMachineVolume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Volume)
	}
	return out
}

// volumeMap is the namespace's Volumes by name, loaded once per request.
func (rq *request) volumeMap() (map[string]*storagev1.Volume, error) {
	s, err := rq.load()
	if err != nil {
		return nil, err
	}
	if s.vols == nil {
		var l storagev1.VolumeList
		if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(rq.ns)); err != nil {
			return nil, fmt.Errorf("list volumes: %w", err)
		}
		s.vols = map[string]*storagev1.Volume{}
		for i := range l.Items {
			s.vols[l.Items[i].Name] = &l.Items[i]
		}
	}
	return s.vols, nil
}

// volumeByID is the caller's Volume of that ID (its UID).
func (rq *request) volumeByID(id string) (*storagev1.Volume, error) {
	vols, err := rq.volumeMap()
	if err != nil {
		return nil, err
	}
	for _, v := range vols {
		if string(v.UID) == id {
			return v, nil
		}
	}
	return nil, nil
}

// serverVolumes are vm's attachments; a VM without volumes reads no
// Volumes.
func (rq *request) serverVolumes(vm *computev1.VirtualMachine) ([]VolumeAttachment, error) {
	if len(vm.VolumeNames()) == 0 {
		return nil, nil
	}
	vols, err := rq.volumeMap()
	if err != nil {
		return nil, err
	}
	return ServerVolumes(vm, vols), nil
}

func (h *handler) volumeAttachmentRoutes(api *http.ServeMux, v string) {
	base := v + "/servers/{id}/os-volume_attachments"
	api.HandleFunc("GET "+base, h.serve(readAccess, h.listVolumeAttachments))
	api.HandleFunc("GET "+base+"/{volume}", h.serve(readAccess, h.listVolumeAttachments))
	api.HandleFunc("POST "+base, h.serve(writeAccess, h.attachVolume))
	api.HandleFunc("PUT "+base+"/{volume}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		if _, err := rq.server(rq.r.PathValue("id")); err != nil {
			return 0, nil, err
		}
		return 0, nil, notImplemented("Swapping or updating a volume attachment is not supported.")
	}))
	api.HandleFunc("DELETE "+base+"/{volume}", h.serve(writeAccess, h.detachVolume))
}

func (h *handler) listVolumeAttachments(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	atts, err := rq.serverVolumes(vm)
	if err != nil {
		return 0, nil, err
	}
	if want := rq.r.PathValue("volume"); want != "" {
		for _, a := range atts {
			if a.VolumeID == want {
				return http.StatusOK, map[string]any{"volumeAttachment": VolumeAttachmentToNova(a, rq.mv, false)}, nil
			}
		}
		return 0, nil, notFound("Volume %s is not attached to server %s.", want, vm.UID)
	}
	out := []any{}
	for _, a := range atts {
		out = append(out, VolumeAttachmentToNova(a, rq.mv, false))
	}
	return http.StatusOK, map[string]any{"volumeAttachments": out}, nil
}

// AttachRequest is POST os-volume_attachments' volumeAttachment.
type AttachRequest struct {
	VolumeID            string
	DeleteOnTermination bool
}

// ParseAttach reads a volumeAttachment body: volumeId is required;
// device is accepted and ignored (the guest names its disks), as is tag
// (2.49); delete_on_termination from 2.79.
func ParseAttach(raw map[string]json.RawMessage, mv Microversion) (AttachRequest, error) {
	var ar AttachRequest
	r, ok := raw["volumeId"]
	if !ok || json.Unmarshal(r, &ar.VolumeID) != nil || ar.VolumeID == "" {
		return ar, badRequest("Invalid input for field/attribute volumeAttachment. 'volumeId' is a required property")
	}
	for k, r := range raw {
		switch k {
		case "volumeId", "device":
		case "tag":
			if !mv.AtLeast(49) {
				return ar, badRequest("Additional properties are not allowed ('tag' was unexpected)")
			}
		case "delete_on_termination":
			if !mv.AtLeast(79) {
				return ar, badRequest("Additional properties are not allowed ('delete_on_termination' was unexpected)")
			}
			if err := json.Unmarshal(r, &ar.DeleteOnTermination); err != nil {
				return ar, badRequest("Invalid input for field/attribute delete_on_termination. Value: %s. It is not of type 'boolean'", r)
			}
		default:
			return ar, badRequest("Additional properties are not allowed ('%s' was unexpected)", k)
		}
	}
	return ar, nil
}

func (h *handler) attachVolume(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	var raw map[string]json.RawMessage
	if err := rq.body("volumeAttachment", &raw); err != nil {
		return 0, nil, err
	}
	ar, err := ParseAttach(raw, rq.mv)
	if err != nil {
		return 0, nil, err
	}
	v, err := rq.volumeByID(ar.VolumeID)
	if err != nil {
		return 0, nil, err
	}
	if v == nil {
		return 0, nil, notFound("Volume %s could not be found.", ar.VolumeID)
	}
	if vm.DeletionTimestamp != nil {
		return 0, nil, conflict("Cannot 'attach_volume' instance %s while it is in task_state deleting", vm.UID)
	}
	if err := AttachCheck(vm, v, rq.snap.vms, rq.snap.vols); err != nil {
		return 0, nil, err
	}
	out := &computev1.VirtualMachine{}
	err = rq.h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(vm), func() error {
		if out.UID != vm.UID {
			return notFound("Instance %s could not be found.", vm.UID)
		}
		if err := AttachCheck(out, v, nil, rq.snap.vols); err != nil {
			return err
		}
		out.Spec.Volumes = append(out.Spec.Volumes, computev1.VirtualMachineVolume{Volume: v.Name})
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if ar.DeleteOnTermination {
		if err := rq.setOwner(v, out, true); err != nil {
			return 0, nil, fmt.Errorf("volume %s attached, but delete_on_termination could not be set: %w", v.UID, err)
		}
	}
	a := VolumeAttachment{VolumeID: string(v.UID), ServerID: string(out.UID), DeleteOnTermination: ar.DeleteOnTermination,
		Device: predictDevice(out, v.Name)}
	return http.StatusOK, map[string]any{"volumeAttachment": VolumeAttachmentToNova(a, rq.mv, true)}, nil
}

// predictDevice is the guest disk a volume just added to a running VM
// should get: the lowest vdX from vdc that no other volume has. "" for a
// VM not running (the order at start decides).
func predictDevice(vm *computev1.VirtualMachine, name string) string {
	if vm.Status.Phase != computev1.VirtualMachineRunning {
		return ""
	}
	used := map[string]bool{}
	for _, s := range vm.Status.Volumes {
		if s.Volume != name {
			used[s.Target] = true
		}
	}
	for c := 'c'; c < 'c'+maxVolumes; c++ {
		if t := "vd" + string(c); !used[t] {
			return "/dev/" + t
		}
	}
	return ""
}

// setOwner makes vm the owner of v (on) or drops it (off): whether v goes
// with the VM.
func (rq *request) setOwner(v *storagev1.Volume, vm *computev1.VirtualMachine, on bool) error {
	out := &storagev1.Volume{}
	return rq.h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(v), func() error {
		refs := slices.DeleteFunc(out.OwnerReferences, func(o metav1.OwnerReference) bool { return o.UID == vm.UID })
		if on {
			refs = append(refs, metav1.OwnerReference{APIVersion: computev1.GroupVersion.String(), Kind: "VirtualMachine",
				Name: vm.Name, UID: vm.UID, BlockOwnerDeletion: ptr(true)})
		}
		out.OwnerReferences = refs
		return nil
	})
}

func (h *handler) detachVolume(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	id := rq.r.PathValue("volume")
	v, err := rq.volumeByID(id)
	if err != nil {
		return 0, nil, err
	}
	if v == nil {
		return 0, nil, notFound("Volume %s could not be found.", id)
	}
	if vm.Spec.RootVolume == v.Name {
		return 0, nil, badRequest("Cannot detach a root device volume.")
	}
	out := &computev1.VirtualMachine{}
	err = rq.h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(vm), func() error {
		if out.UID != vm.UID {
			return notFound("Instance %s could not be found.", vm.UID)
		}
		n := len(out.Spec.Volumes)
		out.Spec.Volumes = slices.DeleteFunc(out.Spec.Volumes, func(x computev1.VirtualMachineVolume) bool { return x.Volume == v.Name })
		if len(out.Spec.Volumes) == n {
			return notFound("Volume %s is not attached to server %s.", id, vm.UID)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	if ownedBy(v, string(vm.UID)) {
		// Detached, it no longer goes with the server.
		if err := rq.setOwner(v, out, false); err != nil {
			return 0, nil, fmt.Errorf("volume %s detached, but it still goes with the server: %w", id, err)
		}
	}
	return http.StatusAccepted, nil, nil
}

// BlockDevice is a volume a create request's block_device_mapping_v2
// asks for: an existing Volume (VolumeID), or a new one (New) of Size GiB,
// empty or made from the image ImageID.
type BlockDevice struct {
	VolumeID            string
	New                 bool
	ImageID             string
	Size                int64
	DeleteOnTermination bool
}

// bdmInt reads a number that clients send as a number or a string; ok
// false when absent or null.
func bdmInt(v any) (n int64, ok bool, err error) {
	switch x := v.(type) {
	case nil:
		return 0, false, nil
	case float64:
		return int64(x), true, nil
	case int:
		return int64(x), true, nil
	case string:
		if x == "" {
			return 0, false, nil
		}
		var i int64
		if _, err := fmt.Sscanf(x, "%d", &i); err != nil {
			return 0, false, err
		}
		return i, true, nil
	}
	return 0, false, fmt.Errorf("not a number: %v", v)
}

func bdmBool(v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case string:
		switch strings.ToLower(x) {
		case "true", "1", "yes", "on":
			return true, nil
		case "false", "0", "no", "off", "":
			return false, nil
		}
	}
	return false, fmt.Errorf("not a boolean: %v", v)
}

// ParseBlockDevices reads block_device_mapping_v2: an image to boot from
// (source image, destination local, boot_index 0: the same as imageRef),
// or a volume to boot from (boot_index 0: an existing volume, or a new one
// from an image), and further volumes (existing, from an image, or blank).
// Snapshots, ephemeral and swap disks are refused.
func ParseBlockDevices(bdms []map[string]any) (imageRef string, boot *BlockDevice, vols []BlockDevice, err error) {
	bootSeen := false
	for i, b := range bdms {
		str := func(k string) string { s, _ := b[k].(string); return s }
		src, dst, uuid := str("source_type"), str("destination_type"), str("uuid")
		idx, hasIdx, err := bdmInt(b["boot_index"])
		if err != nil {
			return "", nil, nil, badRequest("Invalid input for field/attribute boot_index. Value: %v.", b["boot_index"])
		}
		isBoot := hasIdx && idx == 0
		if isBoot {
			if bootSeen {
				return "", nil, nil, badRequest("Boot sequence for the instance and image/block device mapping combination is not valid.")
			}
			bootSeen = true
		}
		size, _, err := bdmInt(b["volume_size"])
		if err != nil || size < 0 {
			return "", nil, nil, badRequest("Invalid input for field/attribute volume_size. Value: %v.", b["volume_size"])
		}
		dot, err := bdmBool(b["delete_on_termination"])
		if err != nil {
			return "", nil, nil, badRequest("Invalid input for field/attribute delete_on_termination. Value: %v.", b["delete_on_termination"])
		}
		if dst == "" {
			dst = "volume"
			if src == "image" || src == "blank" {
				dst = "local"
			}
		}
		bd := BlockDevice{DeleteOnTermination: dot}
		switch {
		case src == "image" && dst == "local":
			if !isBoot {
				return "", nil, nil, badRequest("Block device mapping %d: an image disk other than the boot disk is not supported; use a volume (destination_type volume).", i)
			}
			imageRef = uuid
			continue
		case src == "volume" && dst == "volume":
			if uuid == "" {
				return "", nil, nil, badRequest("Block Device Mapping is Invalid: a volume needs its uuid.")
			}
			bd.VolumeID = uuid
		case src == "image" && dst == "volume":
			if uuid == "" {
				return "", nil, nil, badRequest("Block Device Mapping is Invalid: an image needs its uuid.")
			}
			if size <= 0 {
				return "", nil, nil, badRequest("Images with destination_type 'volume' need to have a non-zero size specified")
			}
			bd.New, bd.ImageID, bd.Size = true, uuid, size
		case src == "blank" && dst == "volume":
			if isBoot {
				return "", nil, nil, badRequest("Block Device Mapping is Invalid: a blank volume cannot be the boot disk.")
			}
			if size <= 0 {
				return "", nil, nil, badRequest("Block Device Mapping is Invalid: a blank volume needs a volume_size.")
			}
			bd.New, bd.Size = true, size
		case src == "blank":
			return "", nil, nil, badRequest("Block Device Mapping is Invalid: ephemeral and swap disks are not supported; use a volume.")
		case src == "snapshot":
			return "", nil, nil, badRequest("Block Device Mapping is Invalid: booting from a volume snapshot is not supported; make a volume from it (Cinder) and boot from that.")
		default:
			return "", nil, nil, badRequest("Block Device Mapping is Invalid: source_type %q with destination_type %q is not supported.", src, dst)
		}
		if isBoot {
			boot = &bd
		} else {
			vols = append(vols, bd)
		}
	}
	if len(vols) > maxVolumes {
		return "", nil, nil, &Error{Code: http.StatusForbidden, Message: fmt.Sprintf("The maximum allowed number of disk devices (%d) to attach to a single instance has been exceeded.", maxVolumes)}
	}
	return imageRef, boot, vols, nil
}

// volumePlan is what a create request's block devices resolve to.
type volumePlan struct {
	root    string   // Volume name, "" : boot from the image
	volumes []string // Volume names, in order
	create  []*storagev1.Volume
	owned   map[string]bool // Volume names that go with the server
}

// planVolumes resolves sc's block devices in the caller's project: the
// existing volumes must be available, unused, bootable for the root, on
// one node; the new ones are built (not made) on that node, or on the
// node Cinder's scheduler would choose.
func (rq *request) planVolumes(sc ServerCreate, vmName string) (*volumePlan, error) {
	pl := &volumePlan{owned: map[string]bool{}}
	if sc.BootVolume == nil && len(sc.Volumes) == 0 {
		return pl, nil
	}
	vols, err := rq.volumeMap()
	if err != nil {
		return nil, err
	}
	s := rq.snap
	node := ""
	taken := func(n string) bool {
		return vols[n] != nil || slices.ContainsFunc(pl.create, func(v *storagev1.Volume) bool { return v.Name == n })
	}
	used := map[string]bool{}
	resolve := func(bd BlockDevice, root bool) (string, error) {
		if bd.New {
			return "", nil
		}
		v, err := rq.volumeByID(bd.VolumeID)
		if err != nil {
			return "", err
		}
		if v == nil {
			return "", badRequest("Block Device Mapping is Invalid: failed to get volume %s.", bd.VolumeID)
		}
		if used[v.Name] {
			return "", badRequest("Block Device Mapping is Invalid: volume %s is given twice.", bd.VolumeID)
		}
		used[v.Name] = true
		for i := range s.vms {
			if o := &s.vms[i]; o.Spec.RootVolume == v.Name || slices.ContainsFunc(o.Spec.Volumes, func(x computev1.VirtualMachineVolume) bool { return x.Volume == v.Name }) {
				return "", badRequest("Invalid volume: volume %s is attached to server %s.", bd.VolumeID, o.UID)
			}
		}
		if st := cinder.VolumeStatus(v); st != "available" {
			return "", badRequest("Invalid volume: volume %s status must be available, not %s.", bd.VolumeID, st)
		}
		if root && !cinder.Bootable(v) {
			return "", badRequest("Block Device %s is not bootable.", bd.VolumeID)
		}
		if n := v.NodeName(); n != "" {
			if node != "" && n != node {
				return "", badRequest("Block Device Mapping is Invalid: volume %s is on node %s, another volume of the server on node %s: a server's volumes must all be on one node.", bd.VolumeID, n, node)
			}
			node = n
		}
		if bd.DeleteOnTermination {
			pl.owned[v.Name] = true
		}
		return v.Name, nil
	}
	if sc.BootVolume != nil {
		if pl.root, err = resolve(*sc.BootVolume, true); err != nil {
			return nil, err
		}
	}
	names := make([]string, len(sc.Volumes))
	for i, bd := range sc.Volumes {
		if names[i], err = resolve(bd, false); err != nil {
			return nil, err
		}
	}
	// New volumes go where the others are, or where Cinder would put them.
	newVol := func(bd BlockDevice, name string) (*storagev1.Volume, error) {
		var source *storagev1.VolumeSource
		if bd.ImageID != "" {
			img := s.image(bd.ImageID)
			if img == nil {
				return nil, badRequest("Image %s could not be found.", bd.ImageID)
			}
			need := cinder.ImageMinGiB(img)
			if bd.Size < need {
				return nil, badRequest("Volume is smaller than the minimum size specified in image metadata. Volume size is %d GiB, minimum size is %d GiB.", bd.Size, need)
			}
			source = &storagev1.VolumeSource{Image: img.Name}
		}
		if node == "" {
			n, err := rq.chooseNode()
			if err != nil {
				return nil, err
			}
			node = n
		}
		v := cinder.BuildVolume(cinder.VolumeCreate{Size: bd.Size}, rq.ns, cinder.KubeName(name, "vol", taken), node, rq.id.UserID, cinder.DefaultType, source)
		pl.create = append(pl.create, v)
		if bd.DeleteOnTermination {
			pl.owned[v.Name] = true
		}
		return v, nil
	}
	if b := sc.BootVolume; b != nil && b.New {
		v, err := newVol(*b, vmName+"-root")
		if err != nil {
			return nil, err
		}
		pl.root = v.Name
	}
	for i, bd := range sc.Volumes {
		if bd.New {
			v, err := newVol(bd, fmt.Sprintf("%s-vol%d", vmName, i))
			if err != nil {
				return nil, err
			}
			names[i] = v.Name
		}
	}
	pl.volumes = names
	return pl, nil
}

// chooseNode is where Cinder would put a new volume (every project's
// volumes count).
func (rq *request) chooseNode() (string, error) {
	var nodes corev1.NodeList
	if err := rq.h.c.List(rq.ctx, &nodes); err != nil {
		return "", err
	}
	var all storagev1.VolumeList
	if err := rq.h.c.List(rq.ctx, &all); err != nil {
		return "", err
	}
	return cinder.ChooseNode(nodes.Items, all.Items), nil
}

// makeVolumes creates pl's new volumes; on an error, those made are
// deleted again.
func (rq *request) makeVolumes(pl *volumePlan) error {
	for i, v := range pl.create {
		if err := rq.h.c.Create(rq.ctx, v); err != nil {
			rq.dropVolumes(pl.create[:i])
			return err
		}
	}
	return nil
}

func (rq *request) dropVolumes(vs []*storagev1.Volume) {
	for _, v := range vs {
		_ = rq.h.c.Delete(context.WithoutCancel(rq.ctx), v)
	}
}

// ownVolumes makes vm the owner of pl's delete_on_termination volumes.
func (rq *request) ownVolumes(pl *volumePlan, vm *computev1.VirtualMachine) error {
	for _, name := range sortedKeys(pl.owned) {
		v := &storagev1.Volume{ObjectMeta: metav1.ObjectMeta{Namespace: vm.Namespace, Name: name}}
		if err := rq.setOwner(v, vm, true); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
	}
	return nil
}
