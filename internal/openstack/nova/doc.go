// Package nova is Strata's OpenStack Compute API (Nova v2.1) over the
// compute.strata.io kinds: a server is a VirtualMachine, a flavor a
// Flavor, a key pair a KeyPair; nothing is stored but those objects (and
// annotations on them).
//
// A server's ID is its VirtualMachine's metadata.uid; a flavor's ID is its
// name. Images, networks, ports and security groups are named by the IDs
// the Image and Networking APIs give them (their UIDs) or by name, always
// within the caller's project's namespace. A caller sees and changes only
// its project's servers and key pairs; anything else is 404.
package nova
