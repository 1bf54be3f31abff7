package v1alpha1

// Identity's fixed names.
const (
	// Namespace holds what identity keeps out of its objects: password
	// hashes, the token signing key and the revocation list.
	Namespace = "strata-identity"
	// DefaultDomain is the one domain (Keystone's "default", named
	// "Default").
	DefaultDomain     = "default"
	DefaultDomainName = "Default"

	// The default roles, and the ClusterRoles a RoleAssignment of each
	// binds in the project's namespace (admin ⊃ member ⊃ reader).
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleReader = "reader"

	// LabelProject marks a namespace as the given Project's.
	LabelProject = "identity.strata.io/project"
	// PasswordSecretPrefix + user name is the Secret holding the user's
	// bcrypt hash under key PasswordHashKey.
	PasswordSecretPrefix = "user-"
	PasswordHashKey      = "bcrypt"
	// KubernetesUserPrefix + user name is how a Keystone user appears to
	// Kubernetes (RoleBinding subjects); KubernetesGroupPrefix likewise.
	KubernetesUserPrefix  = "keystone:"
	KubernetesGroupPrefix = "keystone-group:"
	// KubernetesAppCredPrefix + application credential id is how a token
	// of an application credential appears to Kubernetes: not as its user,
	// whose rights may be wider, but as a subject of its own that the
	// credential's RoleBindings (one per role) name.
	KubernetesAppCredPrefix = "keystone-appcred:"
	// ApplicationCredentialSecretPrefix + credential id is the Secret
	// holding its secret's bcrypt hash under key PasswordHashKey.
	ApplicationCredentialSecretPrefix = "appcred-"
	// EC2SecretPrefix + access key is the Secret holding an EC2
	// credential's secret key under key EC2SecretKey.
	EC2SecretPrefix = "ec2-"
	EC2SecretKey    = "secret"
	// LabelApplicationCredential marks the RoleBindings of an application
	// credential.
	LabelApplicationCredential = "identity.strata.io/application-credential"
)

// ClusterRoleFor is the ClusterRole a RoleAssignment of role binds; a
// role without default meaning binds reader's rights.
func ClusterRoleFor(role string) string {
	switch role {
	case RoleAdmin, RoleMember:
		return "strata:project-" + role
	}
	return "strata:project-reader"
}
