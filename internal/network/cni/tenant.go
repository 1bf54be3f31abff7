package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// TenantAttachment is what the node's network agent (package tenant) tells the plugin about a
// pod on a tenant network, in the file TenantAttachmentPath: the Port's address and MAC and the
// segment's bridge, written once the Port has them and the segment exists on the node.
type TenantAttachment struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	// Network and Port are the networking.strata.io objects, in Namespace.
	Network string `json:"network"`
	Port    string `json:"port"`
	VNI     int32  `json:"vni"`
	Bridge  string `json:"bridge"`
	// Address is the Port's IP with its subnet's prefix length.
	Address netip.Prefix `json:"address"`
	// Gateway is the subnet's (a router's address); zero: no default route.
	Gateway    netip.Addr    `json:"gateway,omitzero"`
	MAC        string        `json:"mac"`
	MTU        int           `json:"mtu"`
	HostRoutes []TenantRoute `json:"hostRoutes,omitempty"`
	DNSServers []netip.Addr  `json:"dnsServers,omitempty"`
}

// TenantRoute is one of a subnet's host routes.
type TenantRoute struct {
	Destination netip.Prefix `json:"destination"`
	NextHop     netip.Addr   `json:"nexthop"`
}

// TenantAttachmentPath is where the agent writes pod namespace/name's attachment.
func TenantAttachmentPath(dir, namespace, pod string) string {
	return filepath.Join(dir, namespace+"_"+pod+".json")
}

// Validate checks what the plugin relies on.
func (a TenantAttachment) Validate() error {
	switch {
	case a.Namespace == "" || a.Pod == "":
		return errors.New("tenant attachment without pod")
	case a.VNI <= 0 || a.Bridge == "" || len(a.Bridge) > 15:
		return fmt.Errorf("tenant attachment of %s/%s: no usable segment (vni %d, bridge %q)", a.Namespace, a.Pod, a.VNI, a.Bridge)
	case !a.Address.IsValid() || !a.Address.Addr().Is4():
		return fmt.Errorf("tenant attachment of %s/%s: no IPv4 address", a.Namespace, a.Pod)
	case a.Gateway.IsValid() && (!a.Address.Masked().Contains(a.Gateway) || a.Gateway == a.Address.Addr()):
		return fmt.Errorf("tenant attachment of %s/%s: gateway %s unusable with %s", a.Namespace, a.Pod, a.Gateway, a.Address)
	case a.MTU < 576 || a.MTU > 65535:
		return fmt.Errorf("tenant attachment of %s/%s: mtu %d out of range", a.Namespace, a.Pod, a.MTU)
	}
	mac, err := net.ParseMAC(a.MAC)
	if err != nil || len(mac) != 6 || mac[0]&1 != 0 {
		return fmt.Errorf("tenant attachment of %s/%s: %q is not a unicast MAC", a.Namespace, a.Pod, a.MAC)
	}
	return nil
}

// WriteTenantAttachment writes a's file in dir atomically (a temporary file renamed into place),
// so the plugin never reads half of it. An unchanged file is left alone.
func WriteTenantAttachment(dir string, a TenantAttachment) error {
	if err := a.Validate(); err != nil {
		return err
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	path := TenantAttachmentPath(dir, a.Namespace, a.Pod)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("tenant attachment dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("tenant attachment: %w", err)
	}
	defer os.Remove(tmp.Name()) // gone after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("tenant attachment: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("tenant attachment: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tenant attachment: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tenant attachment: %w", err)
	}
	return nil
}

// ReadTenantAttachment reads pod namespace/name's attachment; a missing file is fs.ErrNotExist.
func ReadTenantAttachment(dir, namespace, pod string) (TenantAttachment, error) {
	var a TenantAttachment
	b, err := os.ReadFile(TenantAttachmentPath(dir, namespace, pod))
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("tenant attachment of %s/%s: %w", namespace, pod, err)
	}
	return a, a.Validate()
}

// ListTenantAttachments returns the pods (namespace_name file stems) that have an attachment file.
func ListTenantAttachments(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && !strings.HasPrefix(name, ".") {
			out = append(out, name)
		}
	}
	return out, nil
}

// DefaultTenantWait is how long ADD waits for the agent's attachment file: the Port's address is
// allocated by a controller and the segment made by the agent, both after the pod was scheduled.
const DefaultTenantWait = 90 * time.Second

// TenantNetworks resolves pods annotated for a tenant network (networking.strata.io/network or
// /port) to their Port's attachment, from the files the node agent writes in Dir; other pods get
// the pod network. It needs the pod's annotations (PodRef.Annotations), which the runtime passes
// in the config (PodAnnotationsCapability). The plugin uses it when its config names a
// tenantAttachmentDir.
type TenantNetworks struct {
	Dir string
	// Wait bounds the wait for the file (DefaultTenantWait when zero); Poll is the interval.
	Wait, Poll time.Duration
}

// Resolve implements Attachment.
func (t TenantNetworks) Resolve(ctx context.Context, pod PodRef, podNetwork NetworkAttachment) (NetworkAttachment, error) {
	_, byPort := pod.Annotations[networkingv1alpha1.AnnotationPort]
	_, byNetwork := pod.Annotations[networkingv1alpha1.AnnotationNetwork]
	if !byPort && !byNetwork {
		return podNetwork, nil
	}
	if t.Dir == "" {
		return NetworkAttachment{}, types.NewError(types.ErrInvalidNetworkConfig, "pod asks for a tenant network but the node has no tenant attachment dir", "")
	}
	wait, poll := t.Wait, t.Poll
	if wait <= 0 {
		wait = DefaultTenantWait
	}
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		a, err := ReadTenantAttachment(t.Dir, pod.Namespace, pod.Name)
		if err == nil {
			return a.NetworkAttachment(), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return NetworkAttachment{}, types.NewError(types.ErrInvalidNetworkConfig, "unusable tenant attachment", err.Error())
		}
		select {
		case <-ctx.Done():
			// the kubelet retries the sandbox; the Port may still be waiting for an address
			return NetworkAttachment{}, types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("no tenant network attachment for %s/%s yet (does its Port have an address?)", pod.Namespace, pod.Name), "")
		case <-tick.C:
		}
	}
}

// NetworkAttachment is the plugin's view of a: no bridge address, no node IPAM, no hairpin.
func (a TenantAttachment) NetworkAttachment() NetworkAttachment {
	mac, _ := net.ParseMAC(a.MAC) // validated
	out := NetworkAttachment{
		Network: fmt.Sprintf("tenant-%d", a.VNI),
		Port:    a.Port,
		Bridge:  a.Bridge,
		Subnet:  a.Address.Masked(),
		Gateway: a.Gateway,
		IP:      a.Address.Addr(),
		MAC:     mac,
		MTU:     a.MTU,
		Tenant:  true,
		DNS:     a.DNSServers,
	}
	for _, r := range a.HostRoutes {
		out.Routes = append(out.Routes, Route{Dst: r.Destination, Via: r.NextHop})
	}
	return out
}
