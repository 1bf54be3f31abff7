// Package lb owns LoadBalancer Services on bare metal: the external
// address pool and the pure choice of a Service's address from it (the
// server's allocator writes it to status.loadBalancer.ingress), and the
// node side that makes the address reachable: one healthy node per
// Service, elected through a lock with a Lease's semantics, answers ARP
// for it on the node's underlay interface and sends gratuitous ARP when
// it takes over. The nodes' kube-proxy does the rest (the LoadBalancer
// IP's DNAT).
package lb
