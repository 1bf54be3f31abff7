// Package v1alpha1 holds the networking.strata.io/v1alpha1 kinds: the
// Neutron network model (Network, Subnet, Port, Router, FloatingIP,
// SecurityGroup) shared by pods and virtual machines. A project is a
// namespace; every kind is namespaced. An external network (spec.external)
// is usable from routers and floating IPs of every namespace, as Neutron's
// router:external networks are.
//
// +kubebuilder:object:generate=true
// +groupName=networking.strata.io
package v1alpha1
