package registry

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// Errors an Authorizer returns: ErrUnauthorized becomes 401 UNAUTHORIZED
// (the client has not proved who it is); any other error, typically wrapping
// ErrDenied, becomes 403 DENIED.
var (
	ErrUnauthorized = errors.New("authentication required")
	ErrDenied       = errors.New("access denied")
)

// Authorizer decides whether a request may read (push=false) or write
// (push=true) repository repo. repo is empty for registry-wide requests
// (the /v2/ version check and the catalog), which are always reads.
type Authorizer interface {
	Authorize(r *http.Request, repo string, push bool) error
}

// ClientCertPushAuthorizer is the server's default policy: anyone who can
// reach the registry may pull; pushing needs a TLS client certificate that
// the server verified (tls.VerifyClientCertIfGiven with the cluster CA).
//
// Allow, when set, narrows push further (say, to some subjects or
// repositories); a certificate it rejects gets 403 DENIED.
//
// Requirement, when set, says in words who may push (e.g. "a client
// certificate in group system:masters, as in the admin kubeconfig"); it is
// added to the message of every refused push so the client knows what to do.
type ClientCertPushAuthorizer struct {
	Allow       func(cert *x509.Certificate, repo string) bool
	Requirement string
}

// InGroup allows certificates whose subject has group among its
// organizations: the Kubernetes convention for a certificate's groups.
func InGroup(group string) func(cert *x509.Certificate, repo string) bool {
	return func(cert *x509.Certificate, _ string) bool {
		return slices.Contains(cert.Subject.Organization, group)
	}
}

// Authorize implements Authorizer.
func (a ClientCertPushAuthorizer) Authorize(r *http.Request, repo string, push bool) error {
	if !push {
		return nil
	}
	// VerifiedChains is only filled in when the TLS stack verified the
	// certificate; PeerCertificates alone proves nothing.
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return fmt.Errorf("push to %q: %w: a verified TLS client certificate is required%s", repo, ErrUnauthorized, a.requirement())
	}
	cert := r.TLS.VerifiedChains[0][0]
	if a.Allow != nil && !a.Allow(cert, repo) {
		return fmt.Errorf("push to %q by %q: %w%s", repo, cert.Subject.CommonName, ErrDenied, a.requirement())
	}
	return nil
}

func (a ClientCertPushAuthorizer) requirement() string {
	if a.Requirement == "" {
		return ""
	}
	return "; pushing needs " + a.Requirement
}

// AllowAll lets every request through. For tests and for registries only
// reachable by trusted callers.
type AllowAll struct{}

// Authorize implements Authorizer.
func (AllowAll) Authorize(*http.Request, string, bool) error { return nil }
