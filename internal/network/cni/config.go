// Package cni is Strata's CNI plugin: it attaches a pod sandbox to a network (by default the pod
// network: the node's bridge, an address from the node's pod CIDR, a default route via the
// bridge) and detaches it again. It is a multi-call entry point of the strata binary: the agent
// installs the binary into its CNI bin dir under the name PluginType and writes a network config
// (NetConf, see ConfList) into its CNI conf dir; the container runtime then execs it, and the CLI
// hands stdin, the environment and stdout to Main.
//
// Which network and port a pod gets is decided by an Attachment, so tenant networks and Ports
// can be added later without touching the plugin's mechanics.
package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

const (
	// PluginType is the "type" of Strata's networks and the file name of the plugin in the CNI
	// bin dir (a symlink to, or copy of, the strata binary; argv[0] selects CNI mode).
	PluginType = "strata-cni"
	// DefaultBridge is the pod bridge's name when the config leaves it out.
	DefaultBridge = "strata0"
	// PodNetworkName names the default network; IPAM state lives under <ipamDir>/<network>.
	PodNetworkName = "pod"
	// DefaultMTU leaves room for the 50 bytes of VXLAN encapsulation on a 1500-byte underlay.
	DefaultMTU = 1450
	// DefaultCNIVersion is the spec version ConfList writes.
	DefaultCNIVersion = "1.0.0"
)

// NetConf is the plugin's network configuration, as written by the agent and read from stdin.
type NetConf struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`

	// Bridge is the per-node bridge the pod veths attach to (default strata0).
	Bridge string `json:"bridge,omitempty"`
	// PodCIDR is this node's share of the cluster CIDR, e.g. 10.42.3.0/24; its first address is
	// the bridge's (the pods' gateway), pods get the rest.
	PodCIDR string `json:"podCIDR"`
	// ClusterCIDR is the whole pod network, e.g. 10.42.0.0/16.
	ClusterCIDR string `json:"clusterCIDR"`
	// MTU of the pod interfaces (default DefaultMTU).
	MTU int `json:"mtu,omitempty"`
	// HairpinMode lets a pod reach itself through a service address (default true).
	HairpinMode *bool `json:"hairpinMode,omitempty"`
	// IPAMDir holds the address allocations, one directory per network.
	IPAMDir string `json:"ipamDir"`
	// TenantAttachmentDir holds the node agent's tenant network attachments (TenantAttachment
	// files); set, pods annotated for a tenant network are attached to their Port's segment.
	TenantAttachmentDir string `json:"tenantAttachmentDir,omitempty"`

	// Capabilities asks the runtime for runtimeConfig entries: ConfList asks for the pod's
	// annotations (containerd's CRI passes them), which carry a VM's requested IP and MAC.
	Capabilities map[string]bool `json:"capabilities,omitempty"`

	// Set by the runtime, not by the agent.
	RuntimeConfig    *RuntimeConfig       `json:"runtimeConfig,omitempty"`
	RawPrevResult    map[string]any       `json:"prevResult,omitempty"`
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`
}

// PodAnnotationsCapability is containerd's CNI capability that passes the pod's annotations.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// Pod annotations the plugin honours on the pod network.
const (
	// AnnotationIP asks for one address of the node's pod range (a VM keeping its IP across
	// restarts). When another pod holds it ADD fails and the kubelet retries. An address of the
	// cluster network outside the node's range (a VM that migrated here and keeps its first
	// node's address) is given as is, as a /32: that node's IPAM keeps it reserved.
	AnnotationIP = "networking.strata.io/ip"
	// AnnotationMAC sets the pod interface's MAC (a VM's, which the launcher hands to the guest).
	AnnotationMAC = "networking.strata.io/mac"
	// AnnotationRoutedIP on a pod is an address of another node's range that the pod's VM
	// brought along when it migrated here: the node routes it to its bridge and publishes it
	// for the other nodes to route here (internal/agent/vmhandler).
	AnnotationRoutedIP = "networking.strata.io/routed-ip"
)

// RuntimeConfig is what the runtime fills in for the capabilities the config asks for.
type RuntimeConfig struct {
	PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
}

// Config is the validated form of a NetConf.
type Config struct {
	Name        string
	Bridge      string
	PodCIDR     netip.Prefix
	ClusterCIDR netip.Prefix
	MTU         int
	Hairpin     bool
	IPAMDir     string
	TenantDir   string
	// Annotations are the pod's, when the runtime passed them.
	Annotations map[string]string
}

// ParseConfig decodes and validates a network config, filling in defaults.
func ParseConfig(stdin []byte) (NetConf, Config, error) {
	var nc NetConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nc, Config{}, types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
	}
	c, err := nc.validate()
	if err != nil {
		return nc, Config{}, types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", err.Error())
	}
	return nc, c, nil
}

func (nc NetConf) validate() (Config, error) {
	c := Config{Name: nc.Name, Bridge: nc.Bridge, MTU: nc.MTU, Hairpin: true, IPAMDir: nc.IPAMDir, TenantDir: nc.TenantAttachmentDir}
	if nc.RuntimeConfig != nil {
		c.Annotations = nc.RuntimeConfig.PodAnnotations
	}
	if nc.Name == "" {
		return c, fmt.Errorf("name is empty")
	}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if len(c.Bridge) > 15 {
		return c, fmt.Errorf("bridge name %q longer than 15 bytes", c.Bridge)
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 576 || c.MTU > 65535 {
		return c, fmt.Errorf("mtu %d out of range", c.MTU)
	}
	if nc.HairpinMode != nil {
		c.Hairpin = *nc.HairpinMode
	}
	if c.IPAMDir == "" {
		return c, fmt.Errorf("ipamDir is empty")
	}
	var err error
	if c.PodCIDR, err = netip.ParsePrefix(nc.PodCIDR); err != nil {
		return c, fmt.Errorf("podCIDR: %w", err)
	}
	if c.ClusterCIDR, err = netip.ParsePrefix(nc.ClusterCIDR); err != nil {
		return c, fmt.Errorf("clusterCIDR: %w", err)
	}
	c.PodCIDR, c.ClusterCIDR = c.PodCIDR.Masked(), c.ClusterCIDR.Masked()
	if !c.PodCIDR.Addr().Is4() || !c.ClusterCIDR.Addr().Is4() {
		return c, fmt.Errorf("only IPv4 pod networks are supported so far")
	}
	if c.ClusterCIDR.Bits() > c.PodCIDR.Bits() || !c.ClusterCIDR.Contains(c.PodCIDR.Addr()) {
		return c, fmt.Errorf("podCIDR %s is not inside clusterCIDR %s", c.PodCIDR, c.ClusterCIDR)
	}
	return c, nil
}

// ConfList renders the .conflist file the agent writes into the CNI conf dir (for example as
// 10-strata.conflist). name names the network for the runtime; containerd uses the first file in
// lexical order.
func ConfList(name string, c NetConf) ([]byte, error) {
	cniVersion := c.CNIVersion
	if cniVersion == "" {
		cniVersion = DefaultCNIVersion
	}
	c.CNIVersion, c.Name, c.Type = "", name, PluginType
	c.Capabilities = map[string]bool{PodAnnotationsCapability: true}
	if _, err := c.validate(); err != nil {
		return nil, fmt.Errorf("cni conflist: %w", err)
	}
	c.Name = "" // a conflist's plugins inherit name and version from the list
	list := struct {
		CNIVersion string    `json:"cniVersion"`
		Name       string    `json:"name"`
		Plugins    []NetConf `json:"plugins"`
	}{CNIVersion: cniVersion, Name: name, Plugins: []NetConf{c}}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cni conflist: %w", err)
	}
	return append(b, '\n'), nil
}

// PodRef says which pod sandbox interface is being attached, from the CNI environment.
type PodRef struct {
	Namespace   string // K8S_POD_NAMESPACE
	Name        string // K8S_POD_NAME
	UID         string // K8S_POD_UID
	ContainerID string // CNI_CONTAINERID
	IfName      string // CNI_IFNAME
	// Annotations are the pod's, when the runtime passed them (Config.Annotations).
	Annotations map[string]string
}

// ParseCNIArgs reads the pod identity from CNI_ARGS ("K1=V1;K2=V2"); unknown keys are ignored.
func ParseCNIArgs(args string) (PodRef, error) {
	var p PodRef
	for kv := range strings.SplitSeq(args, ";") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return p, types.NewError(types.ErrInvalidEnvironmentVariables, "invalid CNI_ARGS", fmt.Sprintf("%q is not KEY=VALUE", kv))
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			p.Namespace = v
		case "K8S_POD_NAME":
			p.Name = v
		case "K8S_POD_UID":
			p.UID = v
		}
	}
	return p, nil
}
