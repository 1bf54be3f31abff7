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

// ExtraProject is the user-info extra that names a token's project.
const ExtraProject = "identity.strata.io/project"

// AuthenticateToken lets kube-apiserver accept Keystone tokens
// (authenticator.Token): the user is keystone:NAME, whom RoleAssignments'
// RoleBindings give its roles in its projects' namespaces. A token that is
// not Keystone's is not recognised (false, no error).
func (k *Keystone) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	id, _, err := k.validate(ctx, token)
	if errors.Is(err, auth.ErrUnauthorized) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	info := &user.DefaultInfo{
		Name:   identityv1alpha1.KubernetesUserPrefix + id.UserID,
		Groups: []string{KubernetesGroup, user.AllAuthenticated},
	}
	if id.ProjectID != "" {
		info.Extra = map[string][]string{ExtraProject: {id.ProjectID}}
	}
	return &authenticator.Response{User: info}, true, nil
}
