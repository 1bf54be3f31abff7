package nova

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/openstack/neutron"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// snapshot is what the server calls of a namespace read.
type snapshot struct {
	vms      []computev1.VirtualMachine
	flavors  map[string]*computev1.Flavor
	images   []storagev1.Image
	networks []netv1.Network
	ports    []netv1.Port
	groups   []netv1.SecurityGroup
	keypairs []computev1.KeyPair
	vols     map[string]*storagev1.Volume // by name; nil until volumeMap
}

func (rq *request) load() (*snapshot, error) {
	if rq.snap != nil {
		return rq.snap, nil
	}
	s := &snapshot{flavors: map[string]*computev1.Flavor{}}
	in := client.InNamespace(rq.ns)
	var vms computev1.VirtualMachineList
	var images storagev1.ImageList
	var nets netv1.NetworkList
	var ports netv1.PortList
	var groups netv1.SecurityGroupList
	var kps computev1.KeyPairList
	var flavors computev1.FlavorList
	for _, l := range []client.ObjectList{&vms, &images, &nets, &ports, &groups, &kps} {
		if err := rq.h.c.List(rq.ctx, l, in); err != nil {
			return nil, fmt.Errorf("list %T: %w", l, err)
		}
	}
	if err := rq.h.c.List(rq.ctx, &flavors); err != nil {
		return nil, fmt.Errorf("list flavors: %w", err)
	}
	s.vms, s.images, s.networks, s.ports, s.groups, s.keypairs = vms.Items, images.Items, nets.Items, ports.Items, groups.Items, kps.Items
	for i := range flavors.Items {
		s.flavors[flavors.Items[i].Name] = &flavors.Items[i]
	}
	rq.snap = s
	return s, nil
}

func neutronName(m metav1.Object) string {
	if n, ok := m.GetAnnotations()[neutron.AnnotationName]; ok {
		return n
	}
	return m.GetName()
}

// findVM is the caller's server of that ID (or, as a convenience, name).
func (s *snapshot) findVM(id string) *computev1.VirtualMachine {
	for i := range s.vms {
		if string(s.vms[i].UID) == id {
			return &s.vms[i]
		}
	}
	return nil
}

func (s *snapshot) image(ref string) *storagev1.Image {
	for i := range s.images {
		if string(s.images[i].UID) == ref {
			return &s.images[i]
		}
	}
	for i := range s.images {
		if s.images[i].Name == ref {
			return &s.images[i]
		}
	}
	return nil
}

func (s *snapshot) imageByName(name string) *storagev1.Image {
	for i := range s.images {
		if s.images[i].Name == name {
			return &s.images[i]
		}
	}
	return nil
}

func (s *snapshot) network(ref string) *netv1.Network {
	for i := range s.networks {
		if string(s.networks[i].UID) == ref {
			return &s.networks[i]
		}
	}
	for i := range s.networks {
		if neutronName(&s.networks[i]) == ref || s.networks[i].Name == ref {
			return &s.networks[i]
		}
	}
	return nil
}

func (s *snapshot) networkByName(name string) *netv1.Network {
	for i := range s.networks {
		if s.networks[i].Name == name {
			return &s.networks[i]
		}
	}
	return nil
}

func (s *snapshot) port(ref string) *netv1.Port {
	for i := range s.ports {
		if string(s.ports[i].UID) == ref || s.ports[i].Name == ref {
			return &s.ports[i]
		}
	}
	return nil
}

func (s *snapshot) group(ref string) *netv1.SecurityGroup {
	for i := range s.groups {
		if string(s.groups[i].UID) == ref {
			return &s.groups[i]
		}
	}
	for i := range s.groups {
		if neutronName(&s.groups[i]) == ref || s.groups[i].Name == ref {
			return &s.groups[i]
		}
	}
	return nil
}

func (s *snapshot) groupByName(name string) *netv1.SecurityGroup {
	for i := range s.groups {
		if s.groups[i].Name == name {
			return &s.groups[i]
		}
	}
	return nil
}

func (s *snapshot) keypair(name string) *computev1.KeyPair {
	for i := range s.keypairs {
		if DisplayName(&s.keypairs[i]) == name {
			return &s.keypairs[i]
		}
	}
	for i := range s.keypairs {
		if s.keypairs[i].Name == name {
			return &s.keypairs[i]
		}
	}
	return nil
}

// vmPort is the Port a VM runs on (nil on the pod network).
func (s *snapshot) vmPort(vm *computev1.VirtualMachine) *netv1.Port {
	if len(vm.Spec.Networks) == 0 {
		return nil
	}
	n := vm.Spec.Networks[0]
	name := n.Port
	if name == "" {
		if n.Network == "" || n.Network == virtualmachine.PodNetwork {
			return nil
		}
		name = virtualmachine.PortName(vm.Name, n.Network)
	}
	for i := range s.ports {
		if s.ports[i].Name == name {
			return &s.ports[i]
		}
	}
	return nil
}

// info gathers what vm's body shows besides the VM.
func (rq *request) info(vm *computev1.VirtualMachine) ServerInfo {
	s := rq.snap
	in := ServerInfo{ProjectID: rq.id.ProjectID, Flavor: s.flavors[vm.Spec.Flavor], Admin: rq.admin, MV: rq.mv, Links: rq.links()}
	if img := s.imageByName(vm.Spec.Image); img != nil {
		in.ImageID = string(img.UID)
	}
	if len(vm.Spec.KeyPairs) > 0 {
		in.KeyName = vm.Spec.KeyPairs[0]
		for i := range s.keypairs {
			if s.keypairs[i].Name == vm.Spec.KeyPairs[0] {
				in.KeyName = DisplayName(&s.keypairs[i])
			}
		}
	}
	in.Addresses, in.SecurityGroups = s.addresses(vm)
	// Volumes shown are best effort: a server stays readable without them.
	in.Volumes, _ = rq.serverVolumes(vm)
	return in
}

// addresses are vm's addresses by network, and its port's groups.
func (s *snapshot) addresses(vm *computev1.VirtualMachine) ([]Address, []string) {
	port := s.vmPort(vm)
	if port == nil {
		// The pod network, or a port not there (yet): the VM's own word.
		netName := virtualmachine.PodNetwork
		if len(vm.Spec.Networks) > 0 && vm.Spec.Networks[0].Network != "" && vm.Spec.Networks[0].Network != virtualmachine.PodNetwork {
			netName = vm.Spec.Networks[0].Network
			if n := s.networkByName(netName); n != nil {
				netName = neutronName(n)
			}
		} else if len(vm.Spec.Networks) > 0 && vm.Spec.Networks[0].Port != "" {
			return nil, nil // a port of the user's, gone
		}
		var out []Address
		for _, ip := range vm.Status.IPs {
			out = append(out, Address{Network: netName, IP: ip})
		}
		return out, nil
	}
	netName := port.Spec.Network
	if n := s.networkByName(port.Spec.Network); n != nil {
		netName = neutronName(n)
	}
	mac := port.Status.MACAddress
	if mac == "" {
		mac = port.Spec.MACAddress
	}
	var out []Address
	for _, f := range port.Status.FixedIPs {
		if f.IPAddress != "" {
			out = append(out, Address{Network: netName, IP: f.IPAddress, MAC: mac})
		}
	}
	if len(out) == 0 {
		for _, ip := range vm.Status.IPs {
			out = append(out, Address{Network: netName, IP: ip, MAC: mac})
		}
	}
	var groups []string
	if port.Spec.PortSecurityEnabled == nil || *port.Spec.PortSecurityEnabled {
		names := port.Spec.SecurityGroups
		if len(names) == 0 {
			names = []string{netv1.DefaultSecurityGroup}
		}
		for _, g := range names {
			if sg := s.groupByName(g); sg != nil {
				g = neutronName(sg)
			}
			groups = append(groups, g)
		}
	}
	return out, groups
}

func (rq *request) links() Links {
	return Links{API: rq.url(""), Bookmark: rq.bookmark("")}
}

// server finds the caller's server by ID; another project's is 404.
func (rq *request) server(id string) (*computev1.VirtualMachine, error) {
	s, err := rq.load()
	if err != nil {
		return nil, err
	}
	vm := s.findVM(id)
	if vm == nil {
		return nil, notFound("Instance %s could not be found.", id)
	}
	return vm, nil
}

func (h *handler) listServers(rq *request, detail bool) (int, any, error) {
	q := rq.r.URL.Query()
	var err error
	var nameRE, ipRE *regexp.Regexp
	if n := q.Get("name"); n != "" {
		if nameRE, err = regexp.Compile(n); err != nil {
			nameRE = regexp.MustCompile(regexp.QuoteMeta(n))
		}
	}
	if n := q.Get("ip"); n != "" {
		if ipRE, err = regexp.Compile(n); err != nil {
			ipRE = regexp.MustCompile(regexp.QuoteMeta(n))
		}
	}
	var since, before time.Time
	for key, t := range map[string]*time.Time{"changes-since": &since, "changes-before": &before} {
		if v := q.Get(key); v != "" {
			if *t, err = parseTime(v); err != nil {
				return 0, nil, badRequest("Invalid input for query parameters %s. Value: %s. It is not a valid date-time.", key, v)
			}
		}
	}
	subs, err := h.tenantRequests(rq, q)
	if err != nil {
		return 0, nil, err
	}
	// match is whether vm (of sub's project, whose objects s holds)
	// passes the filters.
	match := func(sub *request, s *snapshot, vm *computev1.VirtualMachine) bool {
		st := ServerState(vm)
		if nameRE != nil && !nameRE.MatchString(DisplayName(vm)) {
			return false
		}
		if !since.IsZero() || !before.IsZero() {
			u := updatedAt(vm)
			if !since.IsZero() && u.Before(since) || !before.IsZero() && u.After(before) {
				return false
			}
		}
		if f := q.Get("status"); f != "" && !statusMatches(f, st) {
			return false
		}
		if f := q.Get("vm_state"); f != "" && f != st.VMState {
			return false
		}
		if f := q.Get("flavor"); f != "" && f != vm.Spec.Flavor {
			return false
		}
		if f := q.Get("image"); f != "" {
			if img := s.imageByName(vm.Spec.Image); img == nil || (string(img.UID) != f && img.Name != f) {
				return false
			}
		}
		if f := q.Get("host"); f != "" && sub.admin && f != vm.Status.NodeName {
			return false
		}
		if f := q.Get("key_name"); f != "" && sub.info(vm).KeyName != f {
			return false
		}
		if ipRE != nil {
			addrs, _ := s.addresses(vm)
			ok := false
			for _, a := range addrs {
				ok = ok || ipRE.MatchString(a.IP)
			}
			if !ok {
				return false
			}
		}
		return true
	}
	type listed struct {
		rq *request
		vm *computev1.VirtualMachine
	}
	var all []listed
	for _, sub := range subs {
		s, err := sub.load()
		if err != nil {
			return 0, nil, err
		}
		for i := range s.vms {
			if match(sub, s, &s.vms[i]) {
				all = append(all, listed{sub, &s.vms[i]})
			}
		}
	}
	// Newest first, as Nova.
	sort.SliceStable(all, func(i, j int) bool {
		ti, tj := all[i].vm.CreationTimestamp, all[j].vm.CreationTimestamp
		if !ti.Equal(&tj) {
			return tj.Before(&ti)
		}
		return all[i].vm.UID > all[j].vm.UID
	})
	out := all
	// Pagination by marker (a server ID) and limit.
	if m := q.Get("marker"); m != "" {
		at := -1
		for i, o := range out {
			if string(o.vm.UID) == m {
				at = i
			}
		}
		if at < 0 {
			return 0, nil, badRequest("marker [%s] not found", m)
		}
		out = out[at+1:]
	}
	var next string
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return 0, nil, badRequest("Invalid input for query parameters limit. Value: %s.", l)
		}
		if len(out) > n {
			out = out[:n]
			if n > 0 {
				next = string(out[n-1].vm.UID)
			}
		}
	}
	bodies := []any{}
	for _, o := range out {
		if detail {
			bodies = append(bodies, ServerToNova(o.vm, o.rq.info(o.vm)))
		} else {
			bodies = append(bodies, ServerSummary(o.vm, o.rq.links()))
		}
	}
	resp := map[string]any{"servers": bodies}
	if next != "" {
		path := "/servers"
		if detail {
			path += "/detail"
		}
		q.Set("marker", next)
		resp["servers_links"] = []map[string]string{{"rel": "next", "href": rq.url(path) + "?" + q.Encode()}}
	}
	return http.StatusOK, resp, nil
}

func (h *handler) showServer(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"server": ServerToNova(vm, rq.info(vm))}, nil
}

// adminServer finds the server of that ID in any project, with the
// request of its project; nil if there is none.
func (h *handler) adminServer(rq *request, id string) (*request, *computev1.VirtualMachine) {
	var l computev1.VirtualMachineList
	if err := h.c.List(rq.ctx, &l); err != nil {
		return nil, nil
	}
	for i := range l.Items {
		if string(l.Items[i].UID) != id {
			continue
		}
		sub := rq.as(l.Items[i].Namespace)
		if s, err := sub.load(); err == nil {
			if vm := s.findVM(id); vm != nil {
				return sub, vm
			}
		}
	}
	return nil, nil
}

func (h *handler) createServer(rq *request) (int, any, error) {
	outer, err := rq.rawBody()
	if err != nil {
		return 0, nil, err
	}
	raw, ok := outer["server"]
	if !ok {
		return 0, nil, badRequest("Invalid input for field/attribute server. 'server' is a required property")
	}
	sc, err := ParseServerCreate(raw, rq.mv)
	if err != nil {
		return 0, nil, err
	}
	s, err := rq.load()
	if err != nil {
		return 0, nil, err
	}
	p := Placement{Namespace: rq.ns, UserID: rq.id.UserID}
	flavor := s.flavors[sc.FlavorRef]
	if flavor == nil {
		for _, f := range s.flavors {
			if string(f.UID) == sc.FlavorRef {
				flavor = f
			}
		}
	}
	if flavor == nil {
		return 0, nil, badRequest("Flavor %s could not be found.", sc.FlavorRef)
	}
	if flavor.Spec.IsPublic != nil && !*flavor.Spec.IsPublic && !rq.admin {
		return 0, nil, badRequest("Flavor %s could not be found.", sc.FlavorRef)
	}
	p.Flavor = flavor.Name
	if sc.BootVolume == nil {
		img := s.image(sc.ImageRef)
		if img == nil {
			return 0, nil, badRequest("Image %s could not be found.", sc.ImageRef)
		}
		if img.Status.Phase != "" && img.Status.Phase != storagev1.ImageActive && img.Status.Phase != storagev1.ImageImporting && img.Status.Phase != storagev1.ImageSaving {
			return 0, nil, badRequest("Image %s is not active.", sc.ImageRef)
		}
		p.Image = img.Name
	}
	if sc.KeyName != "" {
		kp := s.keypair(sc.KeyName)
		if kp == nil {
			return 0, nil, badRequest("Invalid key_name provided.")
		}
		p.KeyPair = kp.Name
	}
	// The network.
	var groups []string
	for _, g := range sc.SecurityGroups {
		sg := s.group(g)
		if sg == nil {
			return 0, nil, badRequest("Security group %s not found for project %s.", g, rq.id.ProjectID)
		}
		groups = append(groups, sg.Name)
	}
	switch {
	case sc.NetworkMode == "none":
		return 0, nil, badRequest("A server without a network is not supported here: every server has a network interface (ask for 'auto' or a network).")
	case len(sc.Networks) == 1 && sc.Networks[0].Port != "":
		if sc.Networks[0].UUID != "" || sc.Networks[0].FixedIP != "" {
			return 0, nil, badRequest("Give either a port or a network (with its fixed_ip), not both.")
		}
		port := s.port(sc.Networks[0].Port)
		if port == nil {
			return 0, nil, badRequest("Port id %s could not be found.", sc.Networks[0].Port)
		}
		if d := port.Spec.Device; d != nil && d.Name != "" {
			return 0, nil, conflict("Port %s is still in use.", sc.Networks[0].Port)
		}
		if len(groups) > 0 {
			return 0, nil, badRequest("security_groups apply to the ports a server makes, not to a given port: set the port's groups with Neutron.")
		}
		p.Port = port.Name
	case len(sc.Networks) == 1:
		n := s.network(sc.Networks[0].UUID)
		if n == nil {
			return 0, nil, badRequest("Network %s could not be found.", sc.Networks[0].UUID)
		}
		p.Network = n.Name
		if sc.Networks[0].FixedIP != "" && len(groups) == 0 {
			groups = []string{netv1.DefaultSecurityGroup} // the port must be made here
		}
	default: // auto, or nothing before 2.37
		switch len(s.networks) {
		case 0: // the pod network
			if len(groups) > 0 && !(len(groups) == 1 && groups[0] == netv1.DefaultSecurityGroup) {
				return 0, nil, badRequest("Security groups need a tenant network: there is none in this project.")
			}
			groups = nil
		case 1:
			p.Network = s.networks[0].Name
		default:
			return 0, nil, conflict("Multiple possible networks found, use a Network ID to be more specific.")
		}
	}
	takenVM := func(n string) bool {
		for _, vm := range s.vms {
			if vm.Name == n {
				return true
			}
		}
		return false
	}
	// The launcher pod is vm-<name>: 60 characters leaves it a DNS label.
	p.KubeName = KubeName(sc.Name, "server", 56, takenVM)
	vp, err := rq.planVolumes(sc, p.KubeName)
	if err != nil {
		return 0, nil, err
	}
	p.RootVolume, p.Volumes = vp.root, vp.volumes
	if err := rq.makeVolumes(vp); err != nil {
		return 0, nil, err
	}
	var port *netv1.Port
	if p.Network != "" && (len(groups) > 0 && !(len(groups) == 1 && groups[0] == netv1.DefaultSecurityGroup) || len(sc.Networks) == 1 && sc.Networks[0].FixedIP != "") {
		// Security groups (or an address) of our own: the VM's port is
		// made here, with them, and the VM runs on it.
		port = &netv1.Port{
			ObjectMeta: metav1.ObjectMeta{Namespace: rq.ns, Name: virtualmachine.PortName(p.KubeName, p.Network),
				Labels: map[string]string{virtualmachine.LabelVM: p.KubeName}},
			Spec: netv1.PortSpec{Network: p.Network, SecurityGroups: groups,
				Device: &netv1.PortDevice{Kind: netv1.DeviceVirtualMachine, Name: p.KubeName}},
		}
		if ip := sc.Networks; len(ip) == 1 && ip[0].FixedIP != "" {
			port.Spec.FixedIPs = []netv1.FixedIP{{IPAddress: ip[0].FixedIP}}
		}
		if err := rq.h.c.Create(rq.ctx, port); err != nil {
			rq.dropVolumes(vp.create)
			return 0, nil, err
		}
		p.Port, p.Network = port.Name, ""
	}
	vm := BuildVM(sc, p)
	if err := rq.h.c.Create(rq.ctx, vm); err != nil {
		if port != nil {
			_ = rq.h.c.Delete(context.WithoutCancel(rq.ctx), port)
		}
		rq.dropVolumes(vp.create)
		if apierrors.IsAlreadyExists(err) {
			return 0, nil, conflict("A server named %s is being created; try again.", sc.Name)
		}
		return 0, nil, err
	}
	if port != nil {
		// The port goes with the VM.
		owner := metav1.OwnerReference{APIVersion: computev1.GroupVersion.String(), Kind: "VirtualMachine",
			Name: vm.Name, UID: vm.UID, BlockOwnerDeletion: ptr(true)}
		p2 := &netv1.Port{}
		if err := rq.h.retryUpdate(rq.ctx, p2, client.ObjectKeyFromObject(port), func() error {
			p2.OwnerReferences = append(p2.OwnerReferences, owner)
			return nil
		}); err != nil {
			return 0, nil, fmt.Errorf("server %s made, but its port %s could not be given to it: %w", vm.UID, port.Name, err)
		}
	}
	if err := rq.ownVolumes(vp, vm); err != nil {
		return 0, nil, fmt.Errorf("server %s made, but its delete_on_termination volumes could not be given to it: %w", vm.UID, err)
	}
	id := string(vm.UID)
	out := map[string]any{"id": id, "links": rq.links().of("/servers/" + id), "OS-DCF:diskConfig": "MANUAL"}
	if len(sc.SecurityGroups) > 0 {
		var sgs []map[string]string
		for _, g := range sc.SecurityGroups {
			sgs = append(sgs, map[string]string{"name": g})
		}
		out["security_groups"] = sgs
	} else {
		out["security_groups"] = []map[string]string{{"name": netv1.DefaultSecurityGroup}}
	}
	return http.StatusAccepted, map[string]any{"server": out}, nil
}

func ptr[T any](v T) *T { return &v }

func (h *handler) updateServer(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	var req struct {
		Name        *string `json:"name"`
		Description *string `json:"description"`
		IPv4        *string `json:"accessIPv4"`
		IPv6        *string `json:"accessIPv6"`
	}
	if err := rq.body("server", &req); err != nil {
		return 0, nil, err
	}
	if req.Name != nil && (*req.Name == "" || len(*req.Name) > 255 || strings.TrimSpace(*req.Name) != *req.Name) {
		return 0, nil, badRequest("Invalid input for field/attribute name. Value: %s.", *req.Name)
	}
	if req.Description != nil && !rq.mv.AtLeast(19) {
		return 0, nil, badRequest("Additional properties are not allowed ('description' was unexpected)")
	}
	if req.IPv4 != nil && *req.IPv4 != "" || req.IPv6 != nil && *req.IPv6 != "" {
		return 0, nil, badRequest("accessIPv4 and accessIPv6 are not supported here.")
	}
	out := &computev1.VirtualMachine{}
	err = rq.h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(vm), func() error {
		if out.UID != vm.UID {
			return notFound("Instance %s could not be found.", vm.UID)
		}
		if req.Name != nil {
			if *req.Name == out.Name {
				delete(out.Annotations, AnnotationName)
			} else {
				setAnnotation(out, AnnotationName, *req.Name)
			}
		}
		if req.Description != nil {
			if *req.Description == "" {
				delete(out.Annotations, AnnotationDescription)
			} else {
				setAnnotation(out, AnnotationDescription, *req.Description)
			}
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"server": ServerToNova(out, rq.info(out))}, nil
}

func (h *handler) deleteServer(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	uid := vm.UID
	err = rq.h.c.Delete(rq.ctx, vm, client.Preconditions{UID: &uid}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if apierrors.IsNotFound(err) {
		return 0, nil, notFound("Instance %s could not be found.", uid)
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// Metadata.

func (h *handler) updateMetadata(rq *request, fn func(map[string]string) error) (map[string]string, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	out := &computev1.VirtualMachine{}
	var md map[string]string
	err = rq.h.retryUpdate(rq.ctx, out, client.ObjectKeyFromObject(vm), func() error {
		if out.UID != vm.UID {
			return notFound("Instance %s could not be found.", vm.UID)
		}
		md = Metadata(out)
		if err := fn(md); err != nil {
			return err
		}
		if len(md) > 128 {
			return &Error{Code: http.StatusForbidden, Message: "Quota exceeded for metadata_items: at most 128 items."}
		}
		SetMetadata(out, md)
		return nil
	})
	return md, err
}

func validMetadata(md map[string]string) error {
	for k, v := range md {
		if len(k) < 1 || len(k) > 255 || len(v) > 255 {
			return badRequest("Invalid input for field/attribute metadata: keys are 1 to 255 characters, values at most 255")
		}
	}
	return nil
}

func (h *handler) metadataRoutes(api *http.ServeMux, v string) {
	api.HandleFunc("GET "+v+"/servers/{id}/metadata", h.serve(readAccess, func(rq *request) (int, any, error) {
		vm, err := rq.server(rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"metadata": Metadata(vm)}, nil
	}))
	set := func(replace bool) func(rq *request) (int, any, error) {
		return func(rq *request) (int, any, error) {
			var md map[string]string
			if err := rq.body("metadata", &md); err != nil {
				return 0, nil, err
			}
			if err := validMetadata(md); err != nil {
				return 0, nil, err
			}
			out, err := h.updateMetadata(rq, func(cur map[string]string) error {
				if replace {
					clear(cur)
				}
				for k, v := range md {
					cur[k] = v
				}
				return nil
			})
			return http.StatusOK, map[string]any{"metadata": out}, err
		}
	}
	api.HandleFunc("POST "+v+"/servers/{id}/metadata", h.serve(writeAccess, set(false)))
	api.HandleFunc("PUT "+v+"/servers/{id}/metadata", h.serve(writeAccess, set(true)))
	api.HandleFunc("GET "+v+"/servers/{id}/metadata/{key}", h.serve(readAccess, func(rq *request) (int, any, error) {
		vm, err := rq.server(rq.r.PathValue("id"))
		if err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		val, ok := Metadata(vm)[k]
		if !ok {
			return 0, nil, notFound("Metadata item was not found")
		}
		return http.StatusOK, map[string]any{"meta": map[string]string{k: val}}, nil
	}))
	api.HandleFunc("PUT "+v+"/servers/{id}/metadata/{key}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		var meta map[string]string
		if err := rq.body("meta", &meta); err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		val, ok := meta[k]
		if len(meta) != 1 || !ok {
			return 0, nil, badRequest("Request body and URI mismatch")
		}
		if err := validMetadata(meta); err != nil {
			return 0, nil, err
		}
		_, err := h.updateMetadata(rq, func(cur map[string]string) error { cur[k] = val; return nil })
		return http.StatusOK, map[string]any{"meta": meta}, err
	}))
	api.HandleFunc("DELETE "+v+"/servers/{id}/metadata/{key}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		k := rq.r.PathValue("key")
		_, err := h.updateMetadata(rq, func(cur map[string]string) error {
			if _, ok := cur[k]; !ok {
				return notFound("Metadata item was not found")
			}
			delete(cur, k)
			return nil
		})
		return http.StatusNoContent, nil, err
	}))
}

// ips and os-interface.

func (h *handler) serverIPs(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	addrs, _ := rq.snap.addresses(vm)
	all := AddressesToNova(addrs)
	if n := rq.r.PathValue("network"); n != "" {
		a, ok := all[n]
		if !ok {
			return 0, nil, notFound("Instance %s is not attached to network %s.", vm.UID, n)
		}
		return http.StatusOK, map[string]any{n: a}, nil
	}
	return http.StatusOK, map[string]any{"addresses": all}, nil
}

// InterfaceAttachment is a VM's port as os-interface shows it.
func InterfaceAttachment(p *netv1.Port, networkID string) map[string]any {
	fixed := []map[string]string{}
	for _, f := range p.Status.FixedIPs {
		fixed = append(fixed, map[string]string{"ip_address": f.IPAddress, "subnet_id": f.Subnet})
	}
	mac := p.Status.MACAddress
	if mac == "" {
		mac = p.Spec.MACAddress
	}
	state := p.Status.Status
	if state == "" {
		state = netv1.StatusDown
	}
	return map[string]any{"port_id": string(p.UID), "net_id": networkID, "mac_addr": mac, "fixed_ips": fixed, "port_state": state}
}

func (h *handler) serverInterfaces(rq *request) (int, any, error) {
	vm, err := rq.server(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	out := []any{}
	if p := rq.snap.vmPort(vm); p != nil {
		netID := ""
		if n := rq.snap.networkByName(p.Spec.Network); n != nil {
			netID = string(n.UID)
		}
		a := InterfaceAttachment(p, netID)
		if pid := rq.r.PathValue("port"); pid != "" {
			if pid != string(p.UID) {
				return 0, nil, notFound("Port %s is not attached", pid)
			}
			return http.StatusOK, map[string]any{"interfaceAttachment": a}, nil
		}
		out = append(out, a)
	} else if pid := rq.r.PathValue("port"); pid != "" {
		return 0, nil, notFound("Port %s is not attached", pid)
	}
	return http.StatusOK, map[string]any{"interfaceAttachments": out}, nil
}

// parseTime reads an ISO 8601 time as clients send it (with or without a
// zone, which is then UTC).
func parseTime(v string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time: %s", v)
}

// tenantRequests are the requests a server list runs: the caller's; or,
// for an admin's all_tenants, one per namespace that has servers, each as
// that namespace's project (so that its servers show their own
// tenant_id), narrowed to one by project_id or tenant_id.
func (h *handler) tenantRequests(rq *request, q url.Values) ([]*request, error) {
	if !rq.admin || !osapi.Truthy(q.Get("all_tenants")) {
		return []*request{rq}, nil
	}
	var l computev1.VirtualMachineList
	if err := h.c.List(rq.ctx, &l); err != nil {
		return nil, err
	}
	var nss []string
	for i := range l.Items {
		if ns := l.Items[i].Namespace; !slices.Contains(nss, ns) {
			nss = append(nss, ns)
		}
	}
	want := q.Get("project_id")
	if want == "" {
		want = q.Get("tenant_id")
	}
	var out []*request
	for _, ns := range nss {
		if sub := rq.as(ns); want == "" || want == sub.id.ProjectID {
			out = append(out, sub)
		}
	}
	return out, nil
}

// as is rq as the project of namespace ns (its own snapshot to load).
func (rq *request) as(ns string) *request {
	sub := *rq
	sub.ns, sub.snap = ns, nil
	sub.id.Namespace, sub.id.ProjectID = ns, osapi.ProjectOf(rq.ctx, rq.id, rq.h.cfg.Projects, ns)
	return &sub
}
