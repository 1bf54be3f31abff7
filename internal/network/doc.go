// Package network is the root of Strata's node networking: the pod network that the Strata CNI
// plugin (package cni) attaches pods to, its address management (ipam), the per-node bridge
// (bridge), the VXLAN overlay between nodes (overlay), the node's masquerade and forwarding
// rules (masq) and NetworkPolicy enforcement (policy); for tenant networks, the address bitmap of
// a Subnet that the control plane allocates Ports' addresses from (subnetipam). The packages below
// it own the code; this one only documents how they fit.
//
// Data path, per node: pod eth0 -> veth -> bridge (gateway = first address of the node's pod
// CIDR) -> kernel routing -> either another local pod on the bridge, a remote node's pod CIDR via
// the VXLAN device (routes, ARP and FDB entries programmed from Node objects, no flooding or
// learning), or the outside world through masquerade.
package network
