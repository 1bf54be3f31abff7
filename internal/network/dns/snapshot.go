package dns

import (
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Snapshot is a read-only, point-in-time view of the cluster's Services and their endpoints,
// indexed for lookups. Build it with NewSnapshot or SnapshotFromObjects; never change it after.
type Snapshot struct {
	// Serial is the SOA serial; it should change whenever the data does.
	Serial uint32

	services   map[serviceKey]*Service
	vms        map[serviceKey]*VM
	namespaces map[string]bool
	ptr        map[netip.Addr][]ptrTarget
}

// Service is what DNS needs to know about one Kubernetes Service.
type Service struct {
	Namespace, Name string
	// ClusterIPs are the service's virtual IPs; empty for headless and ExternalName services.
	ClusterIPs []netip.Addr
	// Headless services resolve to their endpoints' addresses.
	Headless bool
	// ExternalName, when set, makes the service a CNAME to this name.
	ExternalName string
	Ports        []Port
	// Endpoints lists the addresses DNS publishes for a headless service: ready ones, or all of
	// them when the service publishes not-ready addresses. Ignored for other services.
	Endpoints []Endpoint
}

// Port is a service or endpoint port as SRV records present it.
type Port struct {
	Name string
	// Protocol is lower case: "tcp", "udp" or "sctp".
	Protocol string
	Port     uint16
}

// Endpoint is one published address of a headless service.
type Endpoint struct {
	Addr netip.Addr
	// Hostname, when set, gives the endpoint the name <hostname>.<svc>.<ns>.svc.<domain>.
	Hostname string
	Ports    []Port
}

// VM is what DNS needs to know about one VirtualMachine: its addresses answer
// <name>.<namespace>.vm.<domain>.
type VM struct {
	Namespace, Name string
	Addrs           []netip.Addr
}

type serviceKey struct{ namespace, name string }

type ptrTarget struct {
	svc      *Service
	vm       *VM
	hostname string // empty: the service name itself
}

// NewSnapshot indexes services. Names are matched case-insensitively.
func NewSnapshot(serial uint32, services []Service) *Snapshot {
	s := &Snapshot{
		Serial:     serial,
		services:   make(map[serviceKey]*Service, len(services)),
		namespaces: map[string]bool{},
		ptr:        map[netip.Addr][]ptrTarget{},
	}
	for i := range services {
		svc := &services[i]
		key := serviceKey{strings.ToLower(svc.Namespace), strings.ToLower(svc.Name)}
		s.services[key] = svc
		s.namespaces[key.namespace] = true
		for _, ip := range svc.ClusterIPs {
			s.ptr[ip] = append(s.ptr[ip], ptrTarget{svc: svc})
		}
		if svc.Headless {
			for _, ep := range svc.Endpoints {
				// An endpoint without a hostname gets the dashed-IP name, as CoreDNS does.
				s.ptr[ep.Addr] = append(s.ptr[ep.Addr], ptrTarget{svc: svc, hostname: endpointHostname(ep)})
			}
		}
	}
	return s
}

// NewSnapshotWithVMs is NewSnapshot that also answers for vms.
func NewSnapshotWithVMs(serial uint32, services []Service, vms []VM) *Snapshot {
	s := NewSnapshot(serial, services)
	s.vms = make(map[serviceKey]*VM, len(vms))
	for i := range vms {
		vm := &vms[i]
		s.vms[serviceKey{strings.ToLower(vm.Namespace), strings.ToLower(vm.Name)}] = vm
		for _, a := range vm.Addrs {
			s.ptr[a] = append(s.ptr[a], ptrTarget{vm: vm})
		}
	}
	return s
}

func (s *Snapshot) vm(namespace, name string) *VM {
	if s == nil {
		return nil
	}
	return s.vms[serviceKey{namespace, name}]
}

func (s *Snapshot) service(namespace, name string) *Service {
	if s == nil {
		return nil
	}
	return s.services[serviceKey{namespace, name}]
}

// SnapshotFromObjects converts informer objects into a Snapshot. It only reads the objects.
func SnapshotFromObjects(serial uint32, services []*corev1.Service, slices []*discoveryv1.EndpointSlice, vms []VM) *Snapshot {
	bySvc := map[serviceKey][]*discoveryv1.EndpointSlice{}
	for _, sl := range slices {
		name := sl.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		k := serviceKey{sl.Namespace, name}
		bySvc[k] = append(bySvc[k], sl)
	}
	out := make([]Service, 0, len(services))
	for _, obj := range services {
		out = append(out, serviceFromObjects(obj, bySvc[serviceKey{obj.Namespace, obj.Name}]))
	}
	return NewSnapshotWithVMs(serial, out, vms)
}

func serviceFromObjects(obj *corev1.Service, slices []*discoveryv1.EndpointSlice) Service {
	svc := Service{Namespace: obj.Namespace, Name: obj.Name}
	for _, p := range obj.Spec.Ports {
		svc.Ports = append(svc.Ports, Port{Name: p.Name, Protocol: protocol(p.Protocol), Port: uint16(p.Port)})
	}
	if obj.Spec.Type == corev1.ServiceTypeExternalName {
		svc.ExternalName = obj.Spec.ExternalName
		return svc
	}
	if obj.Spec.ClusterIP == corev1.ClusterIPNone {
		svc.Headless = true
		svc.Endpoints = publishedEndpoints(slices, obj.Spec.PublishNotReadyAddresses)
		return svc
	}
	ips := obj.Spec.ClusterIPs
	if len(ips) == 0 && obj.Spec.ClusterIP != "" {
		ips = []string{obj.Spec.ClusterIP}
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			svc.ClusterIPs = append(svc.ClusterIPs, a.Unmap())
		}
	}
	return svc
}

// publishedEndpoints returns the endpoints of a headless service, de-duplicated by address
// (the same address can sit in two slices while they are being rebalanced), in a stable order.
func publishedEndpoints(slices []*discoveryv1.EndpointSlice, publishNotReady bool) []Endpoint {
	seen := map[netip.Addr]int{}
	var eps []Endpoint
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var ports []Port
		for _, p := range sl.Ports {
			if p.Port == nil {
				continue
			}
			pp := Port{Port: uint16(*p.Port), Protocol: "tcp"}
			if p.Name != nil {
				pp.Name = *p.Name
			}
			if p.Protocol != nil {
				pp.Protocol = protocol(*p.Protocol)
			}
			ports = append(ports, pp)
		}
		for _, e := range sl.Endpoints {
			// Ready unset means ready, per the EndpointSlice API.
			if !publishNotReady && e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			hostname := ""
			if e.Hostname != nil {
				hostname = strings.ToLower(*e.Hostname)
			}
			for _, a := range e.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					continue
				}
				addr = addr.Unmap()
				if i, ok := seen[addr]; ok {
					eps[i].Ports = mergePorts(eps[i].Ports, ports)
					if eps[i].Hostname == "" {
						eps[i].Hostname = hostname
					}
					continue
				}
				seen[addr] = len(eps)
				eps = append(eps, Endpoint{Addr: addr, Hostname: hostname, Ports: append([]Port(nil), ports...)})
			}
		}
	}
	sort.Slice(eps, func(i, j int) bool { return eps[i].Addr.Less(eps[j].Addr) })
	return eps
}

func mergePorts(have, add []Port) []Port {
	for _, p := range add {
		dup := false
		for _, h := range have {
			if h == p {
				dup = true
				break
			}
		}
		if !dup {
			have = append(have, p)
		}
	}
	return have
}

func protocol(p corev1.Protocol) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(string(p))
}
