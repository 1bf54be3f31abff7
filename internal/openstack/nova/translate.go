package nova

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
)

// Annotations this API keeps on the objects it makes.
const (
	// AnnotationName is a server's or key pair's Nova name, when it is not
	// the object's name (Kubernetes names cannot change or repeat).
	AnnotationName = "compute.strata.io/name"
	// AnnotationDescription is a server's description (2.19).
	AnnotationDescription = "compute.strata.io/description"
	// AnnotationMetadata is a server's metadata, a JSON object of strings.
	AnnotationMetadata = "compute.strata.io/metadata"
	// AnnotationUserID is the Keystone user that created a server.
	AnnotationUserID = "compute.strata.io/user-id"
	// AnnotationLastRunStrategy remembers a stopped VM's run strategy (as
	// `strata vm stop` does).
	AnnotationLastRunStrategy = "compute.strata.io/last-run-strategy"
	// AnnotationRebootAt is when a reboot was asked for (RFC 3339): the
	// server shows HARD_REBOOT until it is Ready again after it.
	AnnotationRebootAt = "compute.strata.io/reboot-requested-at"
	// AnnotationResizeFrom is the flavor a resize left, until it is
	// confirmed or reverted; AnnotationResizeAt when it was asked for.
	AnnotationResizeFrom = "compute.strata.io/resize-from"
	AnnotationResizeAt   = "compute.strata.io/resize-requested-at"
)

// Nova's power states.
const (
	powerNoState  = 0
	powerRunning  = 1
	powerPaused   = 3
	powerShutdown = 4
)

// State is a server's status, as Nova reports it.
type State struct {
	Status, VMState, TaskState string // TaskState "" is null
	PowerState                 int
}

func readyCondition(vm *computev1.VirtualMachine) *metav1.Condition {
	return meta.FindStatusCondition(vm.Status.Conditions, virtualmachine.ConditionReady)
}

// pendingSince reports whether the annotation key holds a time the VM has
// not been Ready since.
func pendingSince(vm *computev1.VirtualMachine, key string) bool {
	v, ok := vm.Annotations[key]
	if !ok {
		return false
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return false
	}
	ready := readyCondition(vm)
	// Conditions keep seconds: Ready in the very second asked is the old one.
	return ready == nil || ready.Status != metav1.ConditionTrue || !ready.LastTransitionTime.Time.After(t)
}

// ServerState derives a server's Nova status from its VM.
func ServerState(vm *computev1.VirtualMachine) State {
	halted := vm.Spec.RunStrategy == computev1.RunStrategyHalted
	var s State
	switch vm.Status.Phase {
	case computev1.VirtualMachineError:
		s = State{"ERROR", "error", "", powerNoState}
	case computev1.VirtualMachineStopped:
		s = State{"SHUTOFF", "stopped", "", powerShutdown}
		if vm.Spec.RunStrategy == computev1.RunStrategyAlways || vm.Spec.RunStrategy == "" {
			s.TaskState = "powering-on"
		}
	case computev1.VirtualMachineRunning:
		s = State{"ACTIVE", "active", "", powerRunning}
		if c := meta.FindStatusCondition(vm.Status.Conditions, virtualmachine.ConditionPaused); c != nil && c.Status == metav1.ConditionTrue {
			s = State{"PAUSED", "paused", "", powerPaused}
		}
	case computev1.VirtualMachineMigrating:
		s = State{"MIGRATING", "active", "migrating", powerRunning}
	default: // Pending, Provisioning, or not seen yet
		task := "scheduling"
		if vm.Status.Phase == computev1.VirtualMachineProvisioning {
			task = "spawning"
		}
		if vm.Status.NodeName == "" {
			s = State{"BUILD", "building", task, powerNoState}
		} else { // it ran before: it is being started again
			s = State{"SHUTOFF", "stopped", "powering-on", powerShutdown}
		}
	}
	if s.Status == "ERROR" {
		if vm.DeletionTimestamp != nil {
			s.TaskState = "deleting"
		}
		return s
	}
	switch {
	case halted && s.Status != "SHUTOFF":
		s.TaskState = "powering-off"
	case halted:
		s.TaskState = ""
	case pendingSince(vm, AnnotationResizeAt) && vm.Annotations[AnnotationResizeFrom] != "":
		s = State{"RESIZE", "active", "resize_migrating", s.PowerState}
	case vm.Annotations[AnnotationResizeFrom] != "" && s.Status == "ACTIVE":
		s = State{"VERIFY_RESIZE", "resized", "", powerRunning}
	case pendingSince(vm, AnnotationRebootAt):
		s = State{"HARD_REBOOT", "active", "rebooting_hard", s.PowerState}
	}
	if vm.DeletionTimestamp != nil {
		s.TaskState = "deleting"
	}
	return s
}

// statusFilter maps a Nova status filter to whether a state matches.
func statusMatches(filter string, s State) bool {
	f := strings.ToUpper(filter)
	if f == "REBOOT" && s.Status == "HARD_REBOOT" {
		return true
	}
	return f == s.Status
}

// Address is one of a server's addresses.
type Address struct {
	Network, IP, MAC string
}

// AddressesToNova groups addresses by network, as Nova's addresses.
func AddressesToNova(addrs []Address) map[string][]map[string]any {
	out := map[string][]map[string]any{}
	for _, a := range addrs {
		version := 4
		if ip, err := netip.ParseAddr(a.IP); err == nil && ip.Is6() {
			version = 6
		}
		e := map[string]any{"version": version, "addr": a.IP, "OS-EXT-IPS:type": "fixed"}
		if a.MAC != "" {
			e["OS-EXT-IPS-MAC:mac_addr"] = a.MAC
		}
		out[a.Network] = append(out[a.Network], e)
	}
	return out
}

// Links builds Nova's self and bookmark links.
type Links struct {
	API      string // the v2.1 base URL, no trailing slash
	Bookmark string // the unversioned base URL
}

func (l Links) of(path string) []map[string]string {
	return []map[string]string{{"rel": "self", "href": l.API + path}, {"rel": "bookmark", "href": l.Bookmark + path}}
}

func (l Links) bookmark(path string) []map[string]string {
	return []map[string]string{{"rel": "bookmark", "href": l.Bookmark + path}}
}

// ServerInfo is what a server's body needs besides its VM.
type ServerInfo struct {
	ProjectID      string
	Flavor         *computev1.Flavor // nil when the flavor is gone
	ImageID        string            // "" when the image is gone
	KeyName        string
	Addresses      []Address
	SecurityGroups []string
	Volumes        []VolumeAttachment
	Admin          bool
	MV             Microversion
	Links          Links
}

// DisplayName is an object's Nova name: the annotation, else its name.
func DisplayName(m metav1.Object) string {
	if n, ok := m.GetAnnotations()[AnnotationName]; ok {
		return n
	}
	return m.GetName()
}

// Metadata is a server's metadata.
func Metadata(vm *computev1.VirtualMachine) map[string]string {
	out := map[string]string{}
	if s := vm.Annotations[AnnotationMetadata]; s != "" {
		_ = json.Unmarshal([]byte(s), &out)
	}
	return out
}

// SetMetadata stores md on vm.
func SetMetadata(vm *computev1.VirtualMachine, md map[string]string) {
	if len(md) == 0 {
		delete(vm.Annotations, AnnotationMetadata)
		return
	}
	b, _ := json.Marshal(md)
	setAnnotation(vm, AnnotationMetadata, string(b))
}

func setAnnotation(m metav1.Object, key, value string) {
	a := m.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	m.SetAnnotations(a)
}

// novaTime is the form Nova gives some times in: no zone, microseconds.
func novaTime(t metav1.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000")
}

func timestamp(t metav1.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// hostID is Nova's opaque per-project host identifier.
func hostID(project, node string) string {
	if node == "" {
		return ""
	}
	sum := sha256.Sum224([]byte(project + node))
	return hex.EncodeToString(sum[:])
}

// updatedAt is when a server last changed, as far as its VM tells: its
// creation or its conditions' last transition.
func updatedAt(vm *computev1.VirtualMachine) time.Time {
	updated := vm.CreationTimestamp.Time
	for _, c := range vm.Status.Conditions {
		if c.LastTransitionTime.After(updated) {
			updated = c.LastTransitionTime.Time
		}
	}
	return updated
}

// ServerToNova is a VM as a Nova server (the detailed form).
func ServerToNova(vm *computev1.VirtualMachine, in ServerInfo) map[string]any {
	st := ServerState(vm)
	id := string(vm.UID)
	var task any
	if st.TaskState != "" {
		task = st.TaskState
	}
	updated := metav1.NewTime(updatedAt(vm))
	var launched any
	if ready := readyCondition(vm); ready != nil && (st.Status != "BUILD") {
		launched = novaTime(ready.LastTransitionTime)
	}
	sgs := []map[string]string{}
	for _, g := range in.SecurityGroups {
		sgs = append(sgs, map[string]string{"name": g})
	}
	md := Metadata(vm)
	var keyName any
	if in.KeyName != "" {
		keyName = in.KeyName
	}
	s := map[string]any{
		"id": id, "name": DisplayName(vm), "status": st.Status,
		"tenant_id": in.ProjectID, "user_id": vm.Annotations[AnnotationUserID],
		"metadata": md, "hostId": hostID(in.ProjectID, vm.Status.NodeName),
		"created": timestamp(vm.CreationTimestamp), "updated": timestamp(updated),
		"addresses": AddressesToNova(in.Addresses), "accessIPv4": "", "accessIPv6": "",
		"links": in.Links.of("/servers/" + id), "OS-DCF:diskConfig": "MANUAL",
		"OS-EXT-AZ:availability_zone": "nova", "config_drive": "", "key_name": keyName,
		"OS-SRV-USG:launched_at": launched, "OS-SRV-USG:terminated_at": nil,
		"OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": st.VMState, "OS-EXT-STS:power_state": st.PowerState,
		"os-extended-volumes:volumes_attached": VolumesAttached(in.Volumes, in.MV), "security_groups": sgs,
	}
	if len(sgs) == 0 {
		delete(s, "security_groups") // Nova leaves it out for a server without ports
	}
	if st.Status == "BUILD" || st.Status == "ACTIVE" {
		progress := 0
		if st.Status == "ACTIVE" {
			progress = 100
		}
		s["progress"] = progress
	}
	if in.ImageID != "" {
		s["image"] = map[string]any{"id": in.ImageID, "links": in.Links.bookmark("/images/" + in.ImageID)}
	} else {
		s["image"] = ""
	}
	s["flavor"] = flavorInServer(vm, in)
	if in.Admin {
		s["OS-EXT-SRV-ATTR:host"] = nilIfEmpty(vm.Status.NodeName)
		s["OS-EXT-SRV-ATTR:hypervisor_hostname"] = nilIfEmpty(vm.Status.NodeName)
		s["OS-EXT-SRV-ATTR:instance_name"] = vm.Namespace + "/" + vm.Name
	}
	if st.Status == "ERROR" {
		fault := map[string]any{"code": 500, "message": "the virtual machine failed"}
		if ready := readyCondition(vm); ready != nil {
			fault["message"] = ready.Reason + ": " + ready.Message
			fault["created"] = timestamp(ready.LastTransitionTime)
		}
		s["fault"] = fault
	}
	mv := in.MV
	if mv.AtLeast(3) && in.Admin {
		s["OS-EXT-SRV-ATTR:reservation_id"] = "r-" + vm.Name
		s["OS-EXT-SRV-ATTR:launch_index"] = 0
		s["OS-EXT-SRV-ATTR:hostname"] = vm.Name
		s["OS-EXT-SRV-ATTR:kernel_id"] = ""
		s["OS-EXT-SRV-ATTR:ramdisk_id"] = ""
		s["OS-EXT-SRV-ATTR:root_device_name"] = "/dev/vda"
		var ud any
		if vm.Spec.UserData != "" {
			ud = base64.StdEncoding.EncodeToString([]byte(vm.Spec.UserData))
		}
		s["OS-EXT-SRV-ATTR:user_data"] = ud
	}
	if mv.AtLeast(9) {
		s["locked"] = false
	}
	if mv.AtLeast(16) && in.Admin {
		hs := "UP"
		if vm.Status.NodeName == "" {
			hs = ""
		}
		s["host_status"] = hs
	}
	if mv.AtLeast(19) {
		s["description"] = nilIfEmpty(vm.Annotations[AnnotationDescription])
	}
	if mv.AtLeast(26) {
		s["tags"] = []string{}
	}
	if mv.AtLeast(63) {
		s["trusted_image_certificates"] = nil
	}
	if mv.AtLeast(71) {
		s["server_groups"] = []string{}
	}
	if mv.AtLeast(73) {
		s["locked_reason"] = nil
	}
	if mv.AtLeast(90) {
		s["OS-EXT-SRV-ATTR:hostname"] = vm.Name
	}
	if mv.AtLeast(96) {
		s["pinned_availability_zone"] = nil
	}
	return s
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// flavorInServer is the server's flavor: a reference before 2.47, the
// flavor's values since.
func flavorInServer(vm *computev1.VirtualMachine, in ServerInfo) map[string]any {
	if !in.MV.AtLeast(47) {
		return map[string]any{"id": vm.Spec.Flavor, "links": in.Links.bookmark("/flavors/" + vm.Spec.Flavor)}
	}
	out := map[string]any{"original_name": vm.Spec.Flavor, "vcpus": vm.Status.VCPUs, "ram": vm.Status.MemoryMiB,
		"disk": 0, "ephemeral": 0, "swap": 0, "extra_specs": map[string]string{}}
	if f := in.Flavor; f != nil {
		out["vcpus"], out["ram"], out["disk"] = f.Spec.VCPUs, f.Spec.RAMMiB, f.Spec.DiskGiB
		out["ephemeral"], out["swap"] = f.Spec.EphemeralGiB, f.Spec.SwapMiB
		if f.Spec.ExtraSpecs != nil {
			out["extra_specs"] = f.Spec.ExtraSpecs
		}
	}
	if vm.Spec.Resources != nil && vm.Spec.Flavor == "" {
		out["original_name"] = ""
		out["vcpus"], out["ram"] = vm.Spec.Resources.VCPUs, vm.Spec.Resources.MemoryMiB
	}
	return out
}

// ServerSummary is a server in GET /servers.
func ServerSummary(vm *computev1.VirtualMachine, l Links) map[string]any {
	id := string(vm.UID)
	return map[string]any{"id": id, "name": DisplayName(vm), "links": l.of("/servers/" + id)}
}

// ServerCreate is a validated server create request.
type ServerCreate struct {
	Name, Description  string
	FlavorRef          string
	ImageRef           string
	Networks           []NetworkRequest
	NetworkMode        string // "auto", "none", or "" for a list (or nothing before 2.37)
	KeyName            string
	UserData           string // decoded
	SecurityGroups     []string
	Metadata           map[string]string
	AvailabilityZone   string
	BlockDeviceMapping bool
	// BootVolume is the volume to boot from (block_device_mapping_v2's
	// boot_index 0); ImageRef is then empty.
	BootVolume *BlockDevice
	// Volumes are further volumes from block_device_mapping_v2.
	Volumes []BlockDevice
}

// NetworkRequest is one entry of a create request's networks.
type NetworkRequest struct {
	UUID    string `json:"uuid"`
	Port    string `json:"port"`
	FixedIP string `json:"fixed_ip"`
	Tag     string `json:"tag"`
}

// ParseServerCreate validates the inner object of POST /servers.
func ParseServerCreate(raw json.RawMessage, mv Microversion) (ServerCreate, error) {
	var req struct {
		Name             *string             `json:"name"`
		Description      *string             `json:"description"`
		FlavorRef        json.RawMessage     `json:"flavorRef"`
		ImageRef         *string             `json:"imageRef"`
		Networks         json.RawMessage     `json:"networks"`
		KeyName          *string             `json:"key_name"`
		UserData         *string             `json:"user_data"`
		SecurityGroups   []map[string]string `json:"security_groups"`
		Metadata         map[string]string   `json:"metadata"`
		MinCount         *int                `json:"min_count"`
		MaxCount         *int                `json:"max_count"`
		AvailabilityZone string              `json:"availability_zone"`
		BDM              []map[string]any    `json:"block_device_mapping_v2"`
		Personality      []any               `json:"personality"`
	}
	if err := json.Unmarshal(raw, &req); err != nil {
		return ServerCreate{}, badRequest("Invalid input for field/attribute server: %v", err)
	}
	var sc ServerCreate
	if req.Name == nil {
		return sc, badRequest("Invalid input for field/attribute server. Value: %s. 'name' is a required property", raw)
	}
	sc.Name = *req.Name
	if n := utf8.RuneCountInString(sc.Name); n < 1 || n > 255 || strings.TrimSpace(sc.Name) != sc.Name {
		return sc, badRequest("Invalid input for field/attribute name. Value: %s. A name is 1 to 255 characters without leading or trailing whitespace.", sc.Name)
	}
	if req.Description != nil {
		if !mv.AtLeast(19) {
			return sc, badRequest("Additional properties are not allowed ('description' was unexpected)")
		}
		sc.Description = *req.Description
	}
	var flavor any
	if err := json.Unmarshal(req.FlavorRef, &flavor); err != nil || req.FlavorRef == nil {
		return sc, badRequest("Invalid input for field/attribute server. 'flavorRef' is a required property")
	}
	switch f := flavor.(type) {
	case string:
		sc.FlavorRef = f
	case float64:
		sc.FlavorRef = fmt.Sprint(f)
	default:
		return sc, badRequest("Invalid input for field/attribute flavorRef. Value: %s.", req.FlavorRef)
	}
	if sc.FlavorRef == "" {
		return sc, badRequest("Invalid flavorRef provided.")
	}
	// A flavorRef may be a link to the flavor.
	if i := strings.LastIndex(sc.FlavorRef, "/flavors/"); i >= 0 {
		sc.FlavorRef = sc.FlavorRef[i+len("/flavors/"):]
	}
	if req.ImageRef != nil {
		sc.ImageRef = *req.ImageRef
		if i := strings.LastIndex(sc.ImageRef, "/images/"); i >= 0 {
			sc.ImageRef = sc.ImageRef[i+len("/images/"):]
		}
	}
	bdmImage, boot, vols, err := ParseBlockDevices(req.BDM)
	if err != nil {
		return sc, err
	}
	if bdmImage != "" && sc.ImageRef == "" {
		sc.ImageRef = bdmImage
	}
	sc.BootVolume, sc.Volumes = boot, vols
	if boot != nil {
		sc.ImageRef = "" // the volume is the root disk
	}
	if sc.ImageRef == "" && sc.BootVolume == nil {
		return sc, badRequest("Missing imageRef attribute")
	}
	switch {
	case len(req.Networks) == 0 || string(req.Networks) == "null":
		if mv.AtLeast(37) {
			return sc, badRequest("Invalid input for field/attribute server. 'networks' is a required property")
		}
	default:
		var mode string
		if json.Unmarshal(req.Networks, &mode) == nil {
			if !mv.AtLeast(37) || (mode != "auto" && mode != "none") {
				return sc, badRequest("Invalid input for field/attribute networks. Value: %s. It must be a list, or 'auto' or 'none' (2.37).", mode)
			}
			sc.NetworkMode = mode
			break
		}
		if err := json.Unmarshal(req.Networks, &sc.Networks); err != nil {
			return sc, badRequest("Invalid input for field/attribute networks: %v", err)
		}
		for _, n := range sc.Networks {
			if n.UUID == "" && n.Port == "" {
				return sc, badRequest("Bad networks format: a network needs its uuid or a port")
			}
		}
		if len(sc.Networks) > 1 {
			return sc, badRequest("Only one network per server is supported here, got %d.", len(sc.Networks))
		}
	}
	if req.KeyName != nil {
		sc.KeyName = *req.KeyName
	}
	if req.UserData != nil && *req.UserData != "" {
		b, err := base64.StdEncoding.DecodeString(*req.UserData)
		if err != nil {
			return sc, badRequest("User data needs to be valid base 64.")
		}
		if len(b) > 65535 {
			return sc, badRequest("User data too large. User data must be no larger than 65535 bytes once base64 decoded.")
		}
		if !utf8.Valid(b) {
			return sc, badRequest("User data must be text (UTF-8) here: it is stored in the VirtualMachine object.")
		}
		sc.UserData = string(b)
	}
	for _, g := range req.SecurityGroups {
		if g["name"] == "" {
			return sc, badRequest("Invalid input for field/attribute security_groups: each needs a name")
		}
		sc.SecurityGroups = append(sc.SecurityGroups, g["name"])
	}
	for k, v := range req.Metadata {
		if len(k) < 1 || len(k) > 255 || len(v) > 255 {
			return sc, badRequest("Invalid input for field/attribute metadata: keys are 1 to 255 characters, values at most 255")
		}
	}
	if len(req.Metadata) > 128 {
		return sc, &Error{Code: http.StatusForbidden, Message: "Quota exceeded for metadata_items: at most 128 items."}
	}
	sc.Metadata = req.Metadata
	if (req.MinCount != nil && *req.MinCount != 1) || (req.MaxCount != nil && *req.MaxCount != 1) {
		return sc, badRequest("Only one server per request is supported here (min_count and max_count must be 1).")
	}
	if req.AvailabilityZone != "" && req.AvailabilityZone != "nova" {
		return sc, badRequest("The requested availability zone is not available")
	}
	sc.AvailabilityZone = req.AvailabilityZone
	if len(req.Personality) > 0 {
		return sc, badRequest("Personality files are not supported; use user_data.")
	}
	return sc, nil
}

// Placement is what a create request resolved to.
type Placement struct {
	Namespace, KubeName string
	Flavor, Image       string // object names
	Network, Port       string // at most one; both empty: the pod network
	KeyPair             string
	UserID              string
	RootVolume          string   // a Volume's name: boot from it instead of Image
	Volumes             []string // Volumes' names
}

// BuildVM is the VirtualMachine a create request makes.
func BuildVM(sc ServerCreate, p Placement) *computev1.VirtualMachine {
	vm := &computev1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.KubeName, Annotations: map[string]string{}},
		Spec: computev1.VirtualMachineSpec{
			Flavor: p.Flavor, Image: p.Image, UserData: sc.UserData, RunStrategy: computev1.RunStrategyAlways,
		},
	}
	if sc.Name != p.KubeName {
		vm.Annotations[AnnotationName] = sc.Name
	}
	if sc.Description != "" {
		vm.Annotations[AnnotationDescription] = sc.Description
	}
	if p.UserID != "" {
		vm.Annotations[AnnotationUserID] = p.UserID
	}
	SetMetadata(vm, sc.Metadata)
	switch {
	case p.Port != "":
		vm.Spec.Networks = []computev1.VirtualMachineNetwork{{Port: p.Port}}
	case p.Network != "":
		vm.Spec.Networks = []computev1.VirtualMachineNetwork{{Network: p.Network}}
	}
	if p.KeyPair != "" {
		vm.Spec.KeyPairs = []string{p.KeyPair}
	}
	if p.RootVolume != "" {
		vm.Spec.Image, vm.Spec.RootVolume = "", p.RootVolume
	}
	for _, v := range p.Volumes {
		vm.Spec.Volumes = append(vm.Spec.Volumes, computev1.VirtualMachineVolume{Volume: v})
	}
	return vm
}

// KubeName is the Kubernetes name for an object created with Nova name:
// the name itself when it is a DNS label of at most max characters that
// taken does not report as used, else prefix-<random>.
func KubeName(name, prefix string, max int, taken func(string) bool) string {
	if name != "" && len(name) <= max && len(validation.IsDNS1123Label(name)) == 0 && !taken(name) {
		return name
	}
	return prefix + "-" + randomSuffix()
}

// FlavorToNova is a Flavor as Nova shows it; detail adds the sizes.
func FlavorToNova(f *computev1.Flavor, mv Microversion, l Links, detail bool) map[string]any {
	out := map[string]any{"id": f.Name, "name": f.Name, "links": l.of("/flavors/" + f.Name)}
	if mv.AtLeast(55) {
		out["description"] = nilIfEmpty(f.Spec.Description)
	}
	if !detail {
		return out
	}
	public := f.Spec.IsPublic == nil || *f.Spec.IsPublic
	var swap any = ""
	if f.Spec.SwapMiB > 0 || mv.AtLeast(75) {
		swap = f.Spec.SwapMiB
	}
	out["ram"], out["vcpus"], out["disk"] = f.Spec.RAMMiB, f.Spec.VCPUs, f.Spec.DiskGiB
	out["OS-FLV-EXT-DATA:ephemeral"], out["swap"] = f.Spec.EphemeralGiB, swap
	out["rxtx_factor"], out["os-flavor-access:is_public"], out["OS-FLV-DISABLED:disabled"] = 1.0, public, false
	if mv.AtLeast(61) {
		es := f.Spec.ExtraSpecs
		if es == nil {
			es = map[string]string{}
		}
		out["extra_specs"] = es
	}
	return out
}

// FlavorCreate is POST /flavors' body.
type FlavorCreate struct {
	Name        string          `json:"name"`
	ID          json.RawMessage `json:"id"`
	RAM         flexNumber      `json:"ram"`
	VCPUs       flexNumber      `json:"vcpus"`
	Disk        flexNumber      `json:"disk"`
	Ephemeral   flexNumber      `json:"OS-FLV-EXT-DATA:ephemeral"`
	Swap        flexNumber      `json:"swap"`
	RXTX        flexNumber      `json:"rxtx_factor"`
	IsPublic    *bool           `json:"os-flavor-access:is_public"`
	Description *string         `json:"description"`
}

// flexNumber is a number that clients send as a number, a string of one,
// "" or null (the last two: unset).
type flexNumber string

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case nil:
		*n = ""
	case string:
		*n = flexNumber(strings.TrimSpace(x))
	case float64:
		*n = flexNumber(strconv.FormatFloat(x, 'f', -1, 64))
	default:
		return fmt.Errorf("not a number: %s", b)
	}
	return nil
}

func intField(n flexNumber, field string, required bool, min int64) (int64, error) {
	if n == "" {
		if required {
			return 0, badRequest("Invalid input for field/attribute flavor. '%s' is a required property", field)
		}
		return 0, nil
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || v < min {
		return 0, badRequest("Invalid input for field/attribute %s. Value: %s. It must be an integer of at least %d.", field, n, min)
	}
	return v, nil
}

// FlavorFromNova is the Flavor a create request makes. Its ID is its
// name, so a given id must be the name (or "auto").
func FlavorFromNova(req FlavorCreate, mv Microversion) (*computev1.Flavor, error) {
	if errs := validation.IsDNS1123Subdomain(req.Name); req.Name == "" || len(errs) > 0 {
		return nil, badRequest("Invalid input for field/attribute name. Value: %q. Flavor names here are their IDs and must be lower-case DNS names (letters, digits, '-' and '.').", req.Name)
	}
	if len(req.ID) > 0 && string(req.ID) != "null" {
		var id any
		_ = json.Unmarshal(req.ID, &id)
		if s := fmt.Sprint(id); s != "auto" && s != req.Name {
			return nil, badRequest("Invalid input for field/attribute id. Value: %s. A flavor's ID is its name here: leave id out or give the name.", s)
		}
	}
	var err error
	f := &computev1.Flavor{ObjectMeta: metav1.ObjectMeta{Name: req.Name}}
	var v int64
	if v, err = intField(req.VCPUs, "vcpus", true, 1); err != nil {
		return nil, err
	}
	f.Spec.VCPUs = int32(v)
	if f.Spec.RAMMiB, err = intField(req.RAM, "ram", true, 1); err != nil {
		return nil, err
	}
	if f.Spec.DiskGiB, err = intField(req.Disk, "disk", true, 0); err != nil {
		return nil, err
	}
	if f.Spec.EphemeralGiB, err = intField(req.Ephemeral, "OS-FLV-EXT-DATA:ephemeral", false, 0); err != nil {
		return nil, err
	}
	if f.Spec.SwapMiB, err = intField(req.Swap, "swap", false, 0); err != nil {
		return nil, err
	}
	public := true
	if req.IsPublic != nil {
		public = *req.IsPublic
	}
	f.Spec.IsPublic = &public
	if req.Description != nil {
		if !mv.AtLeast(55) {
			return nil, badRequest("Additional properties are not allowed ('description' was unexpected)")
		}
		f.Spec.Description = *req.Description
	}
	return f, nil
}

// KeyPairToNova is a KeyPair as Nova shows it; detail is the show form.
func KeyPairToNova(kp *computev1.KeyPair, mv Microversion, userID string, detail bool) map[string]any {
	fp := kp.Status.Fingerprint
	if fp == "" {
		fp = Fingerprint(kp.Spec.PublicKey)
	}
	out := map[string]any{"name": DisplayName(kp), "public_key": kp.Spec.PublicKey, "fingerprint": fp}
	if mv.AtLeast(2) {
		out["type"] = "ssh"
	}
	if detail {
		out["user_id"] = userID
		out["created_at"] = novaTime(kp.CreationTimestamp)
		out["deleted"], out["deleted_at"], out["updated_at"] = false, nil, nil
		out["id"] = 0
	}
	return out
}

// Fingerprint is a public key's MD5 fingerprint as Nova prints it.
func Fingerprint(publicKey string) string {
	pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(publicKey))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(ssh.FingerprintLegacyMD5(pk), "MD5:")
}

// GenerateKeyPair makes an ed25519 key pair: the authorized_keys line and
// the OpenSSH private key.
func GenerateKeyPair(comment string) (public, private string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	spk, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", "", err
	}
	public = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spk)))
	if comment != "" {
		public += " " + comment
	}
	return public, string(pem.EncodeToMemory(block)), nil
}

// ValidKeyPairName is Nova's rule for key pair names (letters, digits,
// spaces, '-', '_', '.', '@' since 2.92; 1 to 255 characters).
func ValidKeyPairName(name string) bool {
	if name == "" || len(name) > 255 || strings.TrimSpace(name) != name {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(" -_.@", r)) {
			return false
		}
	}
	return true
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
