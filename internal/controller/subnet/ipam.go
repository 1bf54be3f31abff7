package subnet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/netstatus"
	"github.com/strata-cloud/strata/internal/network/subnetipam"
)

// Effective is sn's gateway (invalid: none) and allocation pools, from
// its spec as Neutron defaults them.
func Effective(sn *networkingv1alpha1.Subnet) (netip.Prefix, netip.Addr, []subnetipam.Range, error) {
	cidr, err := netip.ParsePrefix(sn.Spec.CIDR)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, nil, fmt.Errorf("cidr %q: %w", sn.Spec.CIDR, err)
	}
	var pools []subnetipam.Range
	for _, p := range sn.Spec.AllocationPools {
		start, err1 := netip.ParseAddr(p.Start)
		end, err2 := netip.ParseAddr(p.End)
		if err1 != nil || err2 != nil {
			return netip.Prefix{}, netip.Addr{}, nil, fmt.Errorf("allocation pool %s-%s is not a range of addresses", p.Start, p.End)
		}
		pools = append(pools, subnetipam.Range{Start: start, End: end})
	}
	gw, pools, err := subnetipam.Effective(cidr, sn.Spec.GatewayIP, sn.Spec.NoGateway, pools)
	return cidr, gw, pools, err
}

// Open is sn's allocation state: its spec's pools over its status's bitmap.
func Open(sn *networkingv1alpha1.Subnet) (*subnetipam.Subnet, error) {
	cidr, gw, pools, err := Effective(sn)
	if err != nil {
		return nil, err
	}
	s, err := subnetipam.New(cidr, gw, pools)
	if err != nil {
		return nil, err
	}
	if err := s.Load(sn.Status.Allocations); err != nil {
		return nil, err
	}
	return s, nil
}

// Counts writes the used and available counts of s into st.
func Counts(st *networkingv1alpha1.SubnetStatus, s *subnetipam.Subnet) {
	st.Allocations = s.Bytes()
	st.Used = int32(s.Used())
	st.Available = int32(s.Free())
}

// IPAM allocates a subnet's addresses through the API server: each change
// of a Subnet's status.allocations is an update with the resourceVersion
// it was computed from, retried from a fresh read on conflict. Reads go to
// Reader (the API server, not a cache) so that retries see the winner's
// write.
type IPAM struct {
	Client client.Client
	Reader client.Reader
}

// apiStore is a subnetipam.Store over one Subnet object.
type apiStore struct {
	m   IPAM
	key types.NamespacedName
	sn  *networkingv1alpha1.Subnet
}

func (s *apiStore) Read(ctx context.Context) (*subnetipam.Subnet, string, error) {
	sn := &networkingv1alpha1.Subnet{}
	if err := s.m.Reader.Get(ctx, s.key, sn); err != nil {
		return nil, "", err
	}
	s.sn = sn
	a, err := Open(sn)
	if err != nil {
		return nil, "", err
	}
	return a, sn.ResourceVersion, nil
}

func (s *apiStore) Write(ctx context.Context, a *subnetipam.Subnet, version string) error {
	sn := s.sn.DeepCopy()
	sn.ResourceVersion = version
	Counts(&sn.Status, a)
	return s.m.Client.Status().Update(ctx, sn)
}

// Update applies change to the subnet key's bitmap with optimistic
// concurrency.
func (m IPAM) Update(ctx context.Context, key types.NamespacedName, change func(*subnetipam.Subnet) error) error {
	return subnetipam.Update(ctx, &apiStore{m: m, key: key}, apierrors.IsConflict, change)
}

// Allocate takes want (invalid: the next free address) on the subnet key.
// Errors wrap subnetipam's (ErrInUse, ErrReserved, ...).
func (m IPAM) Allocate(ctx context.Context, key types.NamespacedName, want netip.Addr) (netip.Addr, error) {
	var got netip.Addr
	err := m.Update(ctx, key, func(s *subnetipam.Subnet) error {
		if !want.IsValid() {
			var err error
			got, err = s.AllocateNext()
			return err
		}
		got = want
		return s.Allocate(want)
	})
	return got, err
}

// Release gives addr back to the subnet key; a subnet that is gone has
// nothing to give back to.
func (m IPAM) Release(ctx context.Context, key types.NamespacedName, addr netip.Addr) error {
	err := m.Update(ctx, key, func(s *subnetipam.Subnet) error {
		if !s.Has(addr) {
			return subnetipam.ErrNoChange
		}
		s.Release(addr)
		return nil
	})
	return client.IgnoreNotFound(err)
}

// OfNetwork lists the subnets of network in namespace ns that are not
// being deleted, oldest first: the first is the network's default for
// new ports.
func OfNetwork(ctx context.Context, c client.Reader, ns, network string) ([]networkingv1alpha1.Subnet, error) {
	var list networkingv1alpha1.SubnetList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	var out []networkingv1alpha1.Subnet
	for _, sn := range list.Items {
		if sn.Spec.Network == network && sn.DeletionTimestamp == nil {
			out = append(out, sn)
		}
	}
	slices.SortFunc(out, func(a, b networkingv1alpha1.Subnet) int { return Older(&a, &b) })
	return out, nil
}

// Usable drops from subnets (oldest first, as OfNetwork returns them)
// each one whose CIDR overlaps an older one's: two bitmaps over the same
// addresses of one segment could give one address twice.
func Usable(subnets []networkingv1alpha1.Subnet) []networkingv1alpha1.Subnet {
	var out []networkingv1alpha1.Subnet
	var kept []netip.Prefix
	for _, sn := range subnets {
		p, err := netip.ParsePrefix(sn.Spec.CIDR)
		if err != nil || slices.ContainsFunc(kept, p.Overlaps) {
			continue
		}
		kept = append(kept, p)
		out = append(out, sn)
	}
	return out
}

// Older orders objects by creation, then name: the older one wins a
// conflict.
func Older[T client.Object](a, b T) int {
	if c := a.GetCreationTimestamp().Compare(b.GetCreationTimestamp().Time); c != 0 {
		return c
	}
	return cmp.Compare(a.GetName(), b.GetName())
}

// Containing returns the subnet of subnets whose CIDR holds addr.
func Containing(subnets []networkingv1alpha1.Subnet, addr netip.Addr) *networkingv1alpha1.Subnet {
	for i := range subnets {
		if p, err := netip.ParsePrefix(subnets[i].Spec.CIDR); err == nil && p.Contains(addr) {
			return &subnets[i]
		}
	}
	return nil
}

// AllocationProblem turns an allocation error into Neutron's words, or
// nil when it is not the request's fault.
func AllocationProblem(err error, want netip.Addr, subnetName, network string) *netstatus.Problem {
	switch {
	case errors.Is(err, subnetipam.ErrInUse):
		return &netstatus.Problem{Reason: "IPAddressInUse", Message: fmt.Sprintf("IP address %s already allocated in subnet %s", want, subnetName)}
	case errors.Is(err, subnetipam.ErrOutsideSubnet), errors.Is(err, subnetipam.ErrReserved):
		return &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("IP address %s is not a valid IP for the specified subnet %s: %v.", want, subnetName, err)}
	case errors.Is(err, subnetipam.ErrFull):
		return &netstatus.Problem{Reason: "IPAddressGenerationFailure", Message: fmt.Sprintf("No more IP addresses available on network %s.", network)}
	case apierrors.IsNotFound(err):
		return &netstatus.Problem{Reason: "SubnetNotFound", Message: fmt.Sprintf("Subnet %s could not be found.", subnetName)}
	}
	if apierrors.ReasonForError(err) == metav1.StatusReasonUnknown && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return &netstatus.Problem{Reason: "InvalidSubnet", Message: fmt.Sprintf("Subnet %s cannot allocate addresses: %v", subnetName, err)}
	}
	return nil
}

// AllocateOn takes want (empty: the next free address) on network of
// namespace ns: on the subnet holding want, or the network's first. A
// problem says why it cannot, in Neutron's words.
func (m IPAM) AllocateOn(ctx context.Context, ns, network, want string) (netip.Addr, *netstatus.Problem, error) {
	subnets, err := OfNetwork(ctx, m.Client, ns, network)
	if err != nil {
		return netip.Addr{}, nil, err
	}
	subnets = Usable(subnets)
	if len(subnets) == 0 {
		return netip.Addr{}, &netstatus.Problem{Reason: "NoSubnet", Message: fmt.Sprintf("Network %s has no subnet to allocate an address from.", network)}, nil
	}
	sn := &subnets[0]
	var addr netip.Addr
	if want != "" {
		addr, err = netip.ParseAddr(want)
		if err != nil {
			return netip.Addr{}, &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("Invalid input: %q is not a valid IP address.", want)}, nil
		}
		if sn = Containing(subnets, addr); sn == nil {
			return netip.Addr{}, &netstatus.Problem{Reason: "InvalidIPAddress", Message: fmt.Sprintf("IP address %s is not a valid IP for any subnet of network %s.", addr, network)}, nil
		}
	}
	got, err := m.Allocate(ctx, client.ObjectKeyFromObject(sn), addr)
	if err != nil {
		if p := AllocationProblem(err, addr, sn.Name, network); p != nil {
			return netip.Addr{}, p, nil
		}
		return netip.Addr{}, nil, err
	}
	return got, nil, nil
}

// ReleaseOn gives addr back to the subnet of network (namespace ns) that
// holds it. An address no subnet of the network holds any more is left to
// the subnets' repair.
func (m IPAM) ReleaseOn(ctx context.Context, ns, network string, addr netip.Addr) error {
	subnets, err := OfNetwork(ctx, m.Client, ns, network)
	if err != nil {
		return err
	}
	if sn := Containing(subnets, addr); sn != nil {
		return m.Release(ctx, client.ObjectKeyFromObject(sn), addr)
	}
	return nil
}
