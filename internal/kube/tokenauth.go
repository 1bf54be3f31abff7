package kube

import (
	"context"
	"sync/atomic"

	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// DeferredTokenAuthenticator lets kube-apiserver accept tokens of an
// authenticator that can only exist once the apiserver serves (Keystone
// stores its users in it): until Set, it recognises no token.
type DeferredTokenAuthenticator struct {
	a atomic.Pointer[authenticator.Token]
}

// Set makes a the authenticator of the tokens.
func (d *DeferredTokenAuthenticator) Set(a authenticator.Token) { d.a.Store(&a) }

// AuthenticateToken implements authenticator.Token.
func (d *DeferredTokenAuthenticator) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	a := d.a.Load()
	if a == nil {
		return nil, false, nil
	}
	return (*a).AuthenticateToken(ctx, token)
}
