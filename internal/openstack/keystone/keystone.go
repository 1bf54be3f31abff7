// Package keystone serves the OpenStack Identity (Keystone) v3 API over
// identity.strata.io objects and issues the tokens every other OpenStack
// API accepts: Keystone is the auth.Authenticator. Tokens are stateless
// HMAC-signed claims (user, project, methods, expiry, a random id); a
// revoked token's id is listed in a Secret until it expires, so validating
// is a signature check and a set lookup.
package keystone

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// CacheTTLEnv, a Go duration in the server's environment, overrides
// DefaultValidationCacheTTL when Config leaves it unset ("0": no cache).
const CacheTTLEnv = "STRATA_KEYSTONE_CACHE_TTL"

// DefaultTokenTTL is how long a token lives unless Config says otherwise.
const DefaultTokenTTL = time.Hour

// Endpoint is one entry of the service catalog.
type Endpoint struct {
	// Type is the service type (identity, network, compute, image).
	Type string
	// Name is the service name (keystone, neutron, nova, glance).
	Name string
	// URL is the endpoint's public URL.
	URL string
}

// Config is what Keystone is given.
type Config struct {
	// Client reads and writes identity.strata.io objects and the Secrets
	// of namespace strata-identity; its scheme must know both.
	Client client.Client
	// Catalog is the service catalog every token carries.
	Catalog []Endpoint
	// Region names the catalog's one region (default RegionOne).
	Region string
	// TokenTTL is a token's lifetime (default DefaultTokenTTL).
	TokenTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// ValidationCacheTTL is how long a validation is reused (default
	// DefaultValidationCacheTTL; negative: no cache).
	ValidationCacheTTL time.Duration
}

// Keystone is the identity service.
type Keystone struct {
	c       client.Client
	catalog []Endpoint
	region  string
	ttl     time.Duration
	now     func() time.Time
	signer  signer
	revoked *revocations
	cache   *sessionCache
}

var _ auth.Authenticator = (*Keystone)(nil)

// New prepares Keystone, creating the token signing key on first start;
// Bootstrap must have created namespace strata-identity.
func New(ctx context.Context, cfg Config) (*Keystone, error) {
	if cfg.Client == nil {
		return nil, errors.New("keystone: no client")
	}
	k := &Keystone{c: cfg.Client, catalog: cfg.Catalog, region: cfg.Region, ttl: cfg.TokenTTL, now: cfg.Now}
	if k.region == "" {
		k.region = "RegionOne"
	}
	if k.ttl <= 0 {
		k.ttl = DefaultTokenTTL
	}
	if k.now == nil {
		k.now = time.Now
	}
	key, err := ensureSigningKey(ctx, k.c)
	if err != nil {
		return nil, err
	}
	k.signer = signer{key: key}
	k.revoked = &revocations{c: k.c, now: k.now}
	ttl := cfg.ValidationCacheTTL
	if ttl == 0 {
		ttl = DefaultValidationCacheTTL
		// For measuring (bench/keystone -compare): "0" turns it off.
		if d, err := time.ParseDuration(os.Getenv(CacheTTLEnv)); err == nil {
			ttl = max(d, -1)
			if d == 0 {
				ttl = -1
			}
		}
	}
	k.cache = &sessionCache{ttl: ttl, now: k.now}
	return k, nil
}

// Authenticate validates a token and returns its identity, with the roles
// the user holds on the token's project now.
func (k *Keystone) Authenticate(ctx context.Context, token string) (auth.Identity, error) {
	s, err := k.validate(ctx, token)
	return s.id, err
}

// Handler serves the API; mount it under the identity prefix with the
// prefix stripped (it serves /, /v3, /v3/...).
func (k *Keystone) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", k.versions)
	mux.HandleFunc("GET /v3", k.version)
	mux.HandleFunc("GET /v3/{$}", k.version)
	mux.HandleFunc("POST /v3/auth/tokens", k.issueToken)

	authed := http.NewServeMux()
	authed.HandleFunc("GET /v3/auth/tokens", k.showToken)
	authed.HandleFunc("DELETE /v3/auth/tokens", k.revokeToken)
	authed.HandleFunc("GET /v3/auth/projects", k.authProjects)
	authed.HandleFunc("GET /v3/auth/catalog", k.authCatalog)
	authed.HandleFunc("GET /v3/domains", k.listDomains)
	authed.HandleFunc("GET /v3/domains/{id}", k.showDomain)
	authed.HandleFunc("GET /v3/projects", k.listProjects)
	authed.HandleFunc("POST /v3/projects", k.createProject)
	authed.HandleFunc("GET /v3/projects/{id}", k.showProject)
	authed.HandleFunc("PATCH /v3/projects/{id}", k.updateProject)
	authed.HandleFunc("DELETE /v3/projects/{id}", k.deleteProject)
	authed.HandleFunc("GET /v3/users", k.listUsers)
	authed.HandleFunc("POST /v3/users", k.createUser)
	authed.HandleFunc("GET /v3/users/{id}", k.showUser)
	authed.HandleFunc("PATCH /v3/users/{id}", k.updateUser)
	authed.HandleFunc("DELETE /v3/users/{id}", k.deleteUser)
	authed.HandleFunc("GET /v3/users/{id}/projects", k.userProjects)
	authed.HandleFunc("GET /v3/roles", k.listRoles)
	authed.HandleFunc("POST /v3/roles", k.createRole)
	authed.HandleFunc("GET /v3/roles/{id}", k.showRole)
	authed.HandleFunc("DELETE /v3/roles/{id}", k.deleteRole)
	authed.HandleFunc("GET /v3/projects/{p}/users/{u}/roles", k.listGrants)
	authed.HandleFunc("PUT /v3/projects/{p}/users/{u}/roles/{r}", k.grant)
	authed.HandleFunc("GET /v3/projects/{p}/users/{u}/roles/{r}", k.checkGrant)
	authed.HandleFunc("DELETE /v3/projects/{p}/users/{u}/roles/{r}", k.revokeGrant)
	authed.HandleFunc("GET /v3/role_assignments", k.listAssignments)
	authed.HandleFunc("GET /v3/users/{id}/groups", k.userGroups)
	authed.HandleFunc("GET /v3/groups", k.listGroups)
	authed.HandleFunc("POST /v3/groups", k.createGroup)
	authed.HandleFunc("GET /v3/groups/{g}", k.showGroup)
	authed.HandleFunc("PATCH /v3/groups/{g}", k.updateGroup)
	authed.HandleFunc("DELETE /v3/groups/{g}", k.deleteGroup)
	authed.HandleFunc("GET /v3/groups/{g}/users", k.groupUsers)
	authed.HandleFunc("PUT /v3/groups/{g}/users/{u}", k.addMember)
	authed.HandleFunc("GET /v3/groups/{g}/users/{u}", k.checkMember) // and HEAD
	authed.HandleFunc("DELETE /v3/groups/{g}/users/{u}", k.removeMember)
	authed.HandleFunc("GET /v3/projects/{p}/groups/{g}/roles", k.listGroupGrants)
	authed.HandleFunc("PUT /v3/projects/{p}/groups/{g}/roles/{r}", k.grantGroup)
	authed.HandleFunc("GET /v3/projects/{p}/groups/{g}/roles/{r}", k.checkGroupGrant)
	authed.HandleFunc("DELETE /v3/projects/{p}/groups/{g}/roles/{r}", k.revokeGroupGrant)
	authed.HandleFunc("GET /v3/users/{id}/application_credentials", k.listAppCreds)
	authed.HandleFunc("POST /v3/users/{id}/application_credentials", k.createAppCred)
	authed.HandleFunc("GET /v3/users/{id}/application_credentials/{ac}", k.showAppCred)
	authed.HandleFunc("DELETE /v3/users/{id}/application_credentials/{ac}", k.deleteAppCred)
	authed.HandleFunc("GET /v3/users/{id}/credentials/OS-EC2", k.listEC2)
	authed.HandleFunc("POST /v3/users/{id}/credentials/OS-EC2", k.createEC2)
	authed.HandleFunc("GET /v3/users/{id}/credentials/OS-EC2/{access}", k.showEC2)
	authed.HandleFunc("DELETE /v3/users/{id}/credentials/OS-EC2/{access}", k.deleteEC2)
	authed.HandleFunc("GET /v3/credentials", k.listCredentials)
	authed.HandleFunc("GET /v3/credentials/{id}", k.showCredential)
	authed.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "Could not find the requested resource: "+r.URL.Path)
	})
	mux.Handle("/", auth.Middleware(k, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusUnauthorized, "The request you have made requires authentication.")
	}, authed))
	return mux
}

// Error titles by status, as Keystone names them.
var titles = map[int]string{
	http.StatusBadRequest:       "Bad Request",
	http.StatusUnauthorized:     "Unauthorized",
	http.StatusForbidden:        "Forbidden",
	http.StatusNotFound:         "Not Found",
	http.StatusConflict:         "Conflict",
	http.StatusMethodNotAllowed: "Method Not Allowed",
}

// writeError writes Keystone's error body.
func writeError(w http.ResponseWriter, code int, message string) {
	title := titles[code]
	if title == "" {
		title = http.StatusText(code)
	}
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Keystone uri="/identity"`)
	}
	writeJSON(w, code, map[string]any{"error": map[string]any{"code": code, "title": title, "message": message}})
}

// writeAPIError maps a Kubernetes API error to Keystone's.
func writeAPIError(w http.ResponseWriter, err error, what string) {
	switch {
	case apierrors.IsNotFound(err):
		writeError(w, http.StatusNotFound, "Could not find "+what+".")
	case apierrors.IsAlreadyExists(err), apierrors.IsConflict(err):
		writeError(w, http.StatusConflict, "Conflict occurred attempting to store "+what+": duplicate entry.")
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		writeError(w, http.StatusBadRequest, "Invalid "+what+": "+err.Error())
	case apierrors.IsForbidden(err):
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
	default:
		writeError(w, http.StatusInternalServerError, "An unexpected error prevented the server from fulfilling your request.")
	}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// readJSON decodes a request body; false means it wrote a 400.
func readJSON(w http.ResponseWriter, r *http.Request, into any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(into); err != nil {
		writeError(w, http.StatusBadRequest, "Malformed request body: "+err.Error())
		return false
	}
	return true
}

// caller is the identity the middleware established.
func caller(r *http.Request) auth.Identity {
	id, _ := auth.FromContext(r.Context())
	return id
}

// requireAdmin writes 403 unless the caller holds admin.
func requireAdmin(w http.ResponseWriter, r *http.Request) bool {
	if caller(r).HasRole(identityv1alpha1.RoleAdmin) {
		return true
	}
	writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
	return false
}

// passwordSecret is the Secret holding user's password hash.
func passwordSecret(user string) types.NamespacedName {
	return types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: identityv1alpha1.PasswordSecretPrefix + user}
}

// setPassword stores user's bcrypt hash (the Secret goes with the User).
func (k *Keystone) setPassword(ctx context.Context, u *identityv1alpha1.User, password string) error {
	return setPassword(ctx, k.c, u, password)
}

func setPassword(ctx context.Context, c client.Client, u *identityv1alpha1.User, password string) error {
	hash, err := hashPassword(password)
	if err != nil {
		return err
	}
	key := passwordSecret(u.Name)
	s := &corev1.Secret{}
	err = c.Get(ctx, key, s)
	if apierrors.IsNotFound(err) {
		ctl := true
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: key.Namespace, Name: key.Name,
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: identityv1alpha1.GroupVersion.String(), Kind: "User",
					Name: u.Name, UID: u.UID, Controller: &ctl,
				}},
			},
			Data: map[string][]byte{identityv1alpha1.PasswordHashKey: hash},
		}
		return c.Create(ctx, s)
	}
	if err != nil {
		return err
	}
	s.Data = map[string][]byte{identityv1alpha1.PasswordHashKey: hash}
	return c.Update(ctx, s)
}

// checkPassword reports whether password is user's.
func (k *Keystone) checkPassword(ctx context.Context, user, password string) (bool, error) {
	s := &corev1.Secret{}
	if err := k.c.Get(ctx, passwordSecret(user), s); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil // a user without a password cannot use one
		}
		return false, err
	}
	return passwordMatches(s.Data[identityv1alpha1.PasswordHashKey], password), nil
}
