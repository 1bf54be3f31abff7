// Package dns owns the cluster DNS server that Strata runs on every node, the address kubelet's
// clusterDNS points pods at. It answers names in the cluster domain from Services and
// EndpointSlices (watched through client-go informers) following the Kubernetes DNS
// specification — service A/AAAA and SRV records, headless endpoints, ExternalName CNAMEs, pod
// names in the "pods insecure" form, PTR records for service and endpoint IPs — and forwards
// every other name to the host's resolvers.
//
// The answers come from a pure core (Zone.Resolve over a Snapshot); the Server is the thin edge
// that keeps the snapshot current, serves UDP and TCP with miekg/dns and forwards upstream.
// Each node's server listens on the node's pod-bridge gateway; the kube-dns Service (ClusterIP =
// kubelet's clusterDNS, internalTrafficPolicy Local) routes pods to their own node's server, its
// EndpointSlice kept from the Node objects by RunClusterService on the servers.
package dns
