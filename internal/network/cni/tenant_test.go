package cni

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func sampleTenantAttachment() TenantAttachment {
	return TenantAttachment{
		Namespace: "proj", Pod: "web-0", Network: "net1", Port: "web-0", VNI: 0x1234, Bridge: "tnbr-001234",
		Address: netip.MustParsePrefix("10.0.0.5/24"), Gateway: netip.MustParseAddr("10.0.0.1"),
		MAC: "fa:16:3e:00:00:05", MTU: 1450,
		HostRoutes: []TenantRoute{{Destination: netip.MustParsePrefix("192.168.50.0/24"), NextHop: netip.MustParseAddr("10.0.0.254")}},
		DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.2")},
	}
}

func TestTenantAttachmentRoundTrip(t *testing.T) {
	dir := t.TempDir()
	a := sampleTenantAttachment()
	if err := WriteTenantAttachment(dir, a); err != nil {
		t.Fatal(err)
	}
	if err := WriteTenantAttachment(dir, a); err != nil { // unchanged: left alone
		t.Fatal(err)
	}
	got, err := ReadTenantAttachment(dir, "proj", "web-0")
	if err != nil || !reflect.DeepEqual(got, a) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	names, err := ListTenantAttachments(dir)
	if err != nil || !reflect.DeepEqual(names, []string{"proj_web-0"}) {
		t.Fatalf("list %v %v (temporary files must not show)", names, err)
	}
	noGW := a
	noGW.Gateway = netip.Addr{}
	if err := WriteTenantAttachment(dir, noGW); err != nil {
		t.Fatal(err)
	}
	if got, _ := ReadTenantAttachment(dir, "proj", "web-0"); got.Gateway.IsValid() {
		t.Fatalf("gateway %s, want none", got.Gateway)
	}
}

func TestTenantAttachmentValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*TenantAttachment)
	}{
		{"no pod", func(a *TenantAttachment) { a.Pod = "" }},
		{"no vni", func(a *TenantAttachment) { a.VNI = 0 }},
		{"long bridge", func(a *TenantAttachment) { a.Bridge = "a-very-long-bridge-name" }},
		{"no address", func(a *TenantAttachment) { a.Address = netip.Prefix{} }},
		{"ipv6", func(a *TenantAttachment) { a.Address = netip.MustParsePrefix("fd00::5/64") }},
		{"gateway outside", func(a *TenantAttachment) { a.Gateway = netip.MustParseAddr("10.1.0.1") }},
		{"gateway is address", func(a *TenantAttachment) { a.Gateway = a.Address.Addr() }},
		{"multicast mac", func(a *TenantAttachment) { a.MAC = "01:00:5e:00:00:01" }},
		{"small mtu", func(a *TenantAttachment) { a.MTU = 100 }},
	}
	if err := sampleTenantAttachment().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := sampleTenantAttachment()
			tt.change(&a)
			if err := a.Validate(); err == nil {
				t.Fatal("accepted")
			}
			if err := WriteTenantAttachment(t.TempDir(), a); err == nil {
				t.Fatal("written")
			}
		})
	}
}

func TestTenantNetworksResolve(t *testing.T) {
	dir := t.TempDir()
	podNet := NetworkAttachment{Network: PodNetworkName, Bridge: "strata0", Subnet: netip.MustParsePrefix("10.42.3.0/24"), MTU: 1450, Hairpin: true}
	r := TenantNetworks{Dir: dir, Wait: 300 * time.Millisecond, Poll: 10 * time.Millisecond}
	ctx := context.Background()

	plain := PodRef{Namespace: "proj", Name: "web-0", Annotations: map[string]string{"other": "x"}}
	if got, err := r.Resolve(ctx, plain, podNet); err != nil || !reflect.DeepEqual(got, podNet) {
		t.Fatalf("unannotated pod: %+v %v", got, err)
	}

	pod := PodRef{Namespace: "proj", Name: "web-0", Annotations: map[string]string{networkingv1alpha1.AnnotationNetwork: "net1"}}
	_, err := r.Resolve(ctx, pod, podNet)
	var te *types.Error
	if !errors.As(err, &te) || te.Code != types.ErrTryAgainLater {
		t.Fatalf("without file: %v, want try-again", err)
	}

	// the file appears while ADD waits
	go func() {
		time.Sleep(50 * time.Millisecond)
		_ = WriteTenantAttachment(dir, sampleTenantAttachment())
	}()
	got, err := r.Resolve(ctx, pod, podNet)
	if err != nil {
		t.Fatal(err)
	}
	want := NetworkAttachment{Network: "tenant-4660", Port: "web-0", Bridge: "tnbr-001234", Subnet: netip.MustParsePrefix("10.0.0.0/24"),
		Gateway: netip.MustParseAddr("10.0.0.1"), IP: netip.MustParseAddr("10.0.0.5"), MAC: got.MAC, MTU: 1450, Tenant: true,
		Routes: []Route{{Dst: netip.MustParsePrefix("192.168.50.0/24"), Via: netip.MustParseAddr("10.0.0.254")}},
		DNS:    []netip.Addr{netip.MustParseAddr("10.0.0.2")}}
	if !reflect.DeepEqual(got, want) || got.MAC.String() != "fa:16:3e:00:00:05" {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if _, err := got.normalize(); err != nil {
		t.Fatal(err)
	}

	// a VM's launcher pod names its Port
	byPort := PodRef{Namespace: "proj", Name: "web-0", Annotations: map[string]string{networkingv1alpha1.AnnotationPort: "p"}}
	if got, err := r.Resolve(ctx, byPort, podNet); err != nil || !got.Tenant {
		t.Fatalf("by port: %+v %v", got, err)
	}

	if err := os.WriteFile(filepath.Join(dir, "proj_bad.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(ctx, PodRef{Namespace: "proj", Name: "bad", Annotations: pod.Annotations}, podNet); err == nil {
		t.Fatal("a broken file resolved")
	}
	if _, err := (TenantNetworks{}).Resolve(ctx, pod, podNet); err == nil {
		t.Fatal("resolved without a dir")
	}
}

func TestDNSAlias(t *testing.T) {
	s := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("1.1.1.1")}
	got, ok := ParseDNSAlias(DNSAlias(s))
	if !ok || !reflect.DeepEqual(got, s) {
		t.Fatalf("round trip %v %v", got, ok)
	}
	if _, ok := ParseDNSAlias("something else"); ok {
		t.Fatal("foreign alias parsed")
	}
}
