package kube

import (
	"context"
	"testing"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

type fixedToken string

func (f fixedToken) AuthenticateToken(_ context.Context, token string) (*authenticator.Response, bool, error) {
	if token != string(f) {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "u"}}, true, nil
}

func TestDeferredTokenAuthenticator(t *testing.T) {
	d := &DeferredTokenAuthenticator{}
	if _, ok, err := d.AuthenticateToken(context.Background(), "t"); ok || err != nil {
		t.Errorf("before Set: %v %v", ok, err)
	}
	d.Set(fixedToken("t"))
	if r, ok, err := d.AuthenticateToken(context.Background(), "t"); !ok || err != nil || r.User.GetName() != "u" {
		t.Errorf("after Set: %v %v %v", r, ok, err)
	}
}
