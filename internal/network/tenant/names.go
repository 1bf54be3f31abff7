// Package tenant wires a node into tenant networks (networking.strata.io
// Networks): one Linux bridge per network in use on the node, joined to the
// same network on other nodes by a VXLAN device with the network's VNI.
// The bridges carry no host address, so the node never routes between
// tenant networks or between a tenant network and the pod network: routers
// (package router) are the only way in or out.
//
// The node's agent (Run) makes the segments of the networks its pods and
// routers use (MakePlan computes them, Segments applies them), writes each
// tenant pod's attachment (Port address, MAC, bridge, gateway) into a file
// that the CNI plugin reads (cni.TenantAttachment), and binds the Port to
// the node once the pod runs.
package tenant

import "fmt"

// BridgeName is the node's bridge for the network with this VNI.
func BridgeName(vni int32) string { return fmt.Sprintf("tnbr-%06x", vni) }

// VXLANName is the node's VXLAN device for the network with this VNI.
func VXLANName(vni int32) string { return fmt.Sprintf("tnvx-%06x", vni) }

// VXLANPort is the UDP port of tenant VXLAN traffic between nodes (IANA's),
// apart from the pod network's overlay (8472).
const VXLANPort = 4789
