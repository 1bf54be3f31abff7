// Package neutron is Strata's OpenStack Networking API (Neutron v2.0) over
// the networking.strata.io kinds: a Neutron network is a Network, a subnet
// a Subnet, and so on; nothing is stored but those objects.
//
// IDs are the objects' metadata.uid. A Neutron name lives in the
// annotation networking.strata.io/name; an object without it (made with
// kubectl) shows its metadata.name as its Neutron name. An object created
// through this API gets the Neutron name as its Kubernetes name when that
// is a valid DNS label not yet used by that kind in the namespace, else a
// generated one (kind prefix and random suffix, e.g. net-1a2b3c4d).
//
// A caller sees and changes only its project's namespace, plus reads the
// external networks of every namespace; anything else is 404, as if it
// did not exist.
package neutron
