// Package dns owns the cluster DNS server that Strata runs on every node, the address kubelet's
// clusterDNS points pods at. It answers names in the cluster domain from Services and
// EndpointSlices (watched through client-go informers) following the Kubernetes DNS
// specification — service A/AAAA and SRV records, headless endpoints, ExternalName CNAMEs, pod
// names in the "pods insecure" form, PTR records for service and endpoint IPs — and forwards
// every other name to the host's resolvers.
//
// The answers come from a pure core (Zone.Resolve over a Snapshot); the Server is the thin edge
// that keeps the snapshot current, serves UDP and TCP with miekg/dns and forwards upstream.
// EnsureLocalAddress makes the cluster DNS IP local on the node so the server can bind it.
package dns
