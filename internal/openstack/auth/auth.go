// Package auth is the contract between Keystone and the other OpenStack
// APIs: who the caller of a request is, established once from its
// X-Auth-Token by an Authenticator and carried in the request's context.
package auth

import (
	"context"
	"errors"
	"net/http"
	"slices"
)

// Identity is an authenticated caller, scoped to one project (or to none,
// for a domain- or unscoped token).
type Identity struct {
	UserID, UserName     string
	DomainID, DomainName string
	// ProjectID and ProjectName are empty for a token without project scope.
	ProjectID, ProjectName string
	// Namespace is the project's Kubernetes namespace.
	Namespace string
	// Roles the user has on the project (Keystone's: admin, member, reader).
	Roles []string
	// ExpiresAt is the token's expiry (RFC 3339), for the APIs that echo it.
	ExpiresAt string
}

// HasRole reports whether the identity holds role (admin implies member,
// member implies reader, as Keystone's default roles do).
func (id Identity) HasRole(role string) bool {
	switch role {
	case "reader":
		return slices.Contains(id.Roles, "reader") || id.HasRole("member")
	case "member":
		return slices.Contains(id.Roles, "member") || id.HasRole("admin")
	}
	return slices.Contains(id.Roles, role)
}

// ErrUnauthorized is what an Authenticator returns for a missing, malformed,
// expired or revoked token.
var ErrUnauthorized = errors.New("the request you have made requires authentication")

// Authenticator validates a token (the X-Auth-Token header's value).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

type identityKey struct{}

// WithIdentity returns ctx carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the identity a Middleware put in ctx.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Middleware authenticates every request's X-Auth-Token with a and passes
// the identity on in the context; a request without a valid token gets
// unauthorized(w, r) (each API writes its own error body).
func Middleware(a Authenticator, unauthorized func(http.ResponseWriter, *http.Request), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get("X-Auth-Token")
		if token == "" {
			unauthorized(w, r)
			return
		}
		id, err := a.Authenticate(r.Context(), token)
		if err != nil {
			unauthorized(w, r)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), id)))
	})
}

// EC2Credentials resolves an EC2-style access key (Keystone's `openstack ec2
// credentials create`) to its secret and the identity it acts as, scoped to
// the credential's project: what S3's SigV4 authentication needs. It returns
// ErrUnauthorized for an unknown access key.
type EC2Credentials interface {
	EC2Credential(ctx context.Context, access string) (secret string, id Identity, err error)
}
