// Package openstack is the root of Strata's OpenStack APIs: Keystone,
// Nova, Neutron and Glance served over the same objects the Kubernetes API
// holds (a Project is a namespace, a server a VirtualMachine, a network a
// Network). The APIs store nothing of their own: every request translates
// to and from Kubernetes objects. The packages below it own the code.
package openstack
