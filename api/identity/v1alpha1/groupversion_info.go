package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of the types in this package.
var GroupVersion = schema.GroupVersion{Group: "identity.strata.io", Version: "v1alpha1"}

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Resource returns the GroupResource for an unqualified resource name of this
// group, as API error helpers expect.
func Resource(resource string) schema.GroupResource {
	return GroupVersion.WithResource(resource).GroupResource()
}

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&Project{}, &ProjectList{},
		&User{}, &UserList{},
		&Role{}, &RoleList{},
		&RoleAssignment{}, &RoleAssignmentList{},
		&Group{}, &GroupList{},
		&ApplicationCredential{}, &ApplicationCredentialList{},
		&EC2Credential{}, &EC2CredentialList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
