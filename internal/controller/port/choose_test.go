package port

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/subnet"
	"github.com/strata-cloud/strata/internal/network/subnetipam"
)

func TestChoose(t *testing.T) {
	subnets := []networkingv1alpha1.Subnet{
		{ObjectMeta: metav1.ObjectMeta{Name: "first"}, Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.0.0.0/24"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "second"}, Spec: networkingv1alpha1.SubnetSpec{Network: "n", CIDR: "10.0.1.0/24"}},
	}
	tests := []struct {
		name         string
		fixed        []networkingv1alpha1.FixedIP
		subnets      []networkingv1alpha1.Subnet
		subnet, addr string
		reason       string
	}{
		{name: "nothing asked: the first subnet", subnets: subnets, subnet: "first"},
		{name: "a subnet", fixed: []networkingv1alpha1.FixedIP{{Subnet: "second"}}, subnets: subnets, subnet: "second"},
		{name: "an address picks its subnet", fixed: []networkingv1alpha1.FixedIP{{IPAddress: "10.0.1.9"}}, subnets: subnets, subnet: "second", addr: "10.0.1.9"},
		{name: "address and subnet", fixed: []networkingv1alpha1.FixedIP{{Subnet: "first", IPAddress: "10.0.0.9"}}, subnets: subnets, subnet: "first", addr: "10.0.0.9"},
		{name: "address outside the named subnet", fixed: []networkingv1alpha1.FixedIP{{Subnet: "first", IPAddress: "10.0.1.9"}}, subnets: subnets, reason: "InvalidIPAddress"},
		{name: "address outside every subnet", fixed: []networkingv1alpha1.FixedIP{{IPAddress: "10.7.0.1"}}, subnets: subnets, reason: "InvalidIPAddress"},
		{name: "unknown subnet", fixed: []networkingv1alpha1.FixedIP{{Subnet: "third"}}, subnets: subnets, reason: "SubnetNotFound"},
		{name: "no subnet", reason: "NoSubnet"},
	}
	for _, tt := range tests {
		p := &networkingv1alpha1.Port{Spec: networkingv1alpha1.PortSpec{Network: "n", FixedIPs: tt.fixed}}
		sn, addr, problem := Choose(p, tt.subnets)
		switch {
		case tt.reason != "":
			if problem == nil || problem.Reason != tt.reason {
				t.Errorf("%s: problem %+v, want %s", tt.name, problem, tt.reason)
			}
		case problem != nil:
			t.Errorf("%s: %v", tt.name, problem)
		case sn.Name != tt.subnet || (tt.addr == "") == addr.IsValid() || (addr.IsValid() && addr.String() != tt.addr):
			t.Errorf("%s: %s %v, want %s %q", tt.name, sn.Name, addr, tt.subnet, tt.addr)
		}
	}
}

func TestAllocationProblem(t *testing.T) {
	want := netip.MustParseAddr("10.0.0.5")
	for _, tt := range []struct {
		err    error
		reason string
	}{
		{fmt.Errorf("x: %w", subnetipam.ErrInUse), "IPAddressInUse"},
		{fmt.Errorf("x: %w", subnetipam.ErrReserved), "InvalidIPAddress"},
		{fmt.Errorf("x: %w", subnetipam.ErrFull), "IPAddressGenerationFailure"},
		{errors.New("allocation pools overlap"), "InvalidSubnet"},
	} {
		p := subnet.AllocationProblem(tt.err, want, "s", "n")
		if p == nil || p.Reason != tt.reason {
			t.Errorf("%v: %+v, want %s", tt.err, p, tt.reason)
		}
	}
}

func TestRandomMAC(t *testing.T) {
	re := regexp.MustCompile(`^fa:16:3e(:[0-9a-f]{2}){3}$`)
	a, b := RandomMAC(), RandomMAC()
	if !re.MatchString(a) || a == b {
		t.Errorf("MACs %s %s", a, b)
	}
}
