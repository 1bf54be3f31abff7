// Package v1alpha1 holds the identity.strata.io/v1alpha1 kinds: Keystone's
// model (Project, User, Role, RoleAssignment, Group,
// ApplicationCredential, EC2Credential) as cluster-scoped objects. A
// Project is the namespace of the same name; a RoleAssignment is a
// RoleBinding in that namespace. Passwords are bcrypt hashes kept in Secrets
// of the strata-identity namespace, never in these objects. There is one
// domain, "default" (Keystone's built-in one).
//
// +kubebuilder:object:generate=true
// +groupName=identity.strata.io
package v1alpha1
