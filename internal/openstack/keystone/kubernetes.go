package keystone

import (
	"context"
	"errors"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// KubernetesGroup is the Kubernetes group of every Keystone user.
const KubernetesGroup = "keystone:users"

// ExtraProject is the user-info extra that names a token's project;
// ExtraUser names the Keystone user of an application credential's token.
const (
	ExtraProject = "identity.strata.io/project"
	ExtraUser    = "identity.strata.io/user"
)

// AuthenticateToken lets kube-apiserver accept Keystone tokens
// (authenticator.Token): the user is keystone:NAME, whom RoleAssignments'
// RoleBindings give its roles in its projects' namespaces, and whose
// Keystone groups are its groups keystone-group:GROUP, which group
// RoleAssignments' RoleBindings name. A token of an application credential
// is keystone-appcred:ID instead, with only the credential's roles on its
// project (RoleBindings the identity controller keeps), never its user's
// wider rights. A token that is
// not Keystone's is not recognised (false, no error).
func (k *Keystone) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	s, err := k.validate(ctx, token)
	if errors.Is(err, auth.ErrUnauthorized) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return &authenticator.Response{User: kubernetesUser(s)}, true, nil
}

// kubernetesUser is how a validated token appears to Kubernetes.
func kubernetesUser(s session) *user.DefaultInfo {
	info := &user.DefaultInfo{Name: identityv1alpha1.KubernetesUserPrefix + s.id.UserID}
	extra := map[string][]string{}
	if s.appCred != nil {
		info.Name = identityv1alpha1.KubernetesAppCredPrefix + s.appCred.Name
		extra[ExtraUser] = []string{s.id.UserID}
		info.Groups = []string{KubernetesGroup}
	} else {
		info.Groups = []string{KubernetesGroup}
		for _, g := range s.groups {
			info.Groups = append(info.Groups, identityv1alpha1.KubernetesGroupPrefix+g)
		}
	}
	info.Groups = append(info.Groups, user.AllAuthenticated)
	if s.id.ProjectID != "" {
		extra[ExtraProject] = []string{s.id.ProjectID}
	}
	if len(extra) > 0 {
		info.Extra = extra
	}
	return info
}
