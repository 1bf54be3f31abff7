package keystone

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// DefaultValidationCacheTTL bounds how long a validated token (or a
// resolved EC2 credential) is reused without reading the user, project,
// groups and role assignments again: a change made through another server
// or kubectl (a role removed, a user disabled, a group membership dropped)
// reaches an already-validated token within this time. Changes made through
// this Keystone empty the cache at once, and revocation is checked at every
// validation regardless (its own bound is revokedRefresh across servers).
const DefaultValidationCacheTTL = 2 * time.Second

// maxCached bounds the cache's entries.
const maxCached = 10000

// session is a validated token or a resolved EC2 credential: who, on what
// project, with which roles.
type session struct {
	id     auth.Identity
	c      claims
	groups []string // the user's Keystone groups
	// appCred is the application credential a token came from.
	appCred *identityv1alpha1.ApplicationCredential
	// secret is an EC2 credential's secret key.
	secret string
}

// sessionCache holds recent validations, keyed by token (or "ec2:" +
// access key), each for ttl. flush empties it; a validation that began
// before a flush is not stored (generation check).
type sessionCache struct {
	ttl time.Duration
	now func() time.Time

	mu  sync.Mutex
	gen uint64
	m   map[string]cachedSession
}

type cachedSession struct {
	s  session
	at time.Time
}

func (sc *sessionCache) get(key string) (session, uint64, bool) {
	if sc == nil || sc.ttl <= 0 {
		return session{}, 0, false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	e, ok := sc.m[key]
	if ok && sc.now().Sub(e.at) < sc.ttl {
		return e.s, sc.gen, true
	}
	if ok {
		delete(sc.m, key)
	}
	return session{}, sc.gen, false
}

func (sc *sessionCache) put(key string, gen uint64, s session) {
	if sc == nil || sc.ttl <= 0 {
		return
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if gen != sc.gen {
		return // flushed meanwhile: what was read may be stale
	}
	now := sc.now()
	if len(sc.m) >= maxCached {
		for k, e := range sc.m {
			if now.Sub(e.at) >= sc.ttl {
				delete(sc.m, k)
			}
		}
		if len(sc.m) >= maxCached {
			clear(sc.m)
		}
	}
	if sc.m == nil {
		sc.m = map[string]cachedSession{}
	}
	sc.m[key] = cachedSession{s: s, at: now}
}

// flush forgets every cached validation: identity changed.
func (sc *sessionCache) flush() {
	if sc == nil {
		return
	}
	sc.mu.Lock()
	sc.gen++
	clear(sc.m)
	sc.mu.Unlock()
}

// changed is called after every write through this Keystone that changes
// someone's access (grants, revocations, memberships, deletions, disabling).
func (k *Keystone) changed() { k.cache.flush() }

// validate checks signature, expiry, revocation and that the user (and
// project, and application credential) still exist and are enabled, and
// reads the roles held now (cached for the cache's TTL).
func (k *Keystone) validate(ctx context.Context, token string) (session, error) {
	c, err := k.signer.verify(token)
	if err != nil {
		return session{}, auth.ErrUnauthorized
	}
	if !k.now().Before(c.expiresAt()) {
		return session{}, fmt.Errorf("%w: the token has expired", auth.ErrUnauthorized)
	}
	revoked, err := k.revoked.isRevoked(ctx, c.ID)
	if err != nil {
		return session{}, err
	}
	if revoked {
		return session{}, fmt.Errorf("%w: the token has been revoked", auth.ErrUnauthorized)
	}
	s, gen, ok := k.cache.get(token)
	if ok {
		return s, nil
	}
	s, err = k.load(ctx, c)
	if err != nil {
		return session{}, err
	}
	k.cache.put(token, gen, s)
	return s, nil
}

// load reads what a token's claims stand for now.
func (k *Keystone) load(ctx context.Context, c claims) (session, error) {
	u := &identityv1alpha1.User{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: c.User}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return session{}, auth.ErrUnauthorized
		}
		return session{}, err
	}
	if string(u.UID) != c.UserUID || !u.IsEnabled() {
		return session{}, auth.ErrUnauthorized
	}
	groups, err := k.groupsOf(ctx, u.Name)
	if err != nil {
		return session{}, err
	}
	s := session{c: c, groups: groups, id: auth.Identity{
		UserID: u.Name, UserName: u.Name,
		DomainID: identityv1alpha1.DefaultDomain, DomainName: identityv1alpha1.DefaultDomainName,
		ExpiresAt: formatTime(c.expiresAt()),
	}}
	if c.AppCred != "" {
		ac, err := k.liveAppCred(ctx, c.AppCred, u)
		if err != nil {
			return session{}, err
		}
		if ac.Spec.Project != c.Project {
			return session{}, auth.ErrUnauthorized
		}
		s.appCred = ac
	}
	if c.Project != "" {
		p := &identityv1alpha1.Project{}
		if err := k.c.Get(ctx, types.NamespacedName{Name: c.Project}, p); err != nil {
			if apierrors.IsNotFound(err) {
				return session{}, auth.ErrUnauthorized
			}
			return session{}, err
		}
		if !p.IsEnabled() {
			return session{}, auth.ErrUnauthorized
		}
		roles, err := k.rolesOn(ctx, u.Name, groups, p.Name)
		if err != nil {
			return session{}, err
		}
		if s.appCred != nil {
			if roles, err = appCredRoles(s.appCred, roles); err != nil {
				return session{}, err
			}
		}
		if len(roles) == 0 {
			return session{}, fmt.Errorf("%w: no role on the project any more", auth.ErrUnauthorized)
		}
		s.id.ProjectID, s.id.ProjectName, s.id.Namespace, s.id.Roles = p.Name, p.Name, p.Name, roles
	}
	return s, nil
}

// groupsOf lists the groups user is a member of, sorted.
func (k *Keystone) groupsOf(ctx context.Context, user string) ([]string, error) {
	list := &identityv1alpha1.GroupList{}
	if err := k.c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list groups: %w", err)
	}
	var groups []string
	for i := range list.Items {
		if list.Items[i].HasMember(user) {
			groups = append(groups, list.Items[i].Name)
		}
	}
	slices.Sort(groups)
	return groups, nil
}

// rolesOn lists the roles user holds on project, directly or through one
// of groups, sorted.
func (k *Keystone) rolesOn(ctx context.Context, user string, groups []string, project string) ([]string, error) {
	list := &identityv1alpha1.RoleAssignmentList{}
	if err := k.c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list role assignments: %w", err)
	}
	var roles []string
	for _, ra := range list.Items {
		if ra.Spec.Project != project || slices.Contains(roles, ra.Spec.Role) {
			continue
		}
		if (ra.Spec.User != "" && ra.Spec.User == user) || (ra.Spec.Group != "" && slices.Contains(groups, ra.Spec.Group)) {
			roles = append(roles, ra.Spec.Role)
		}
	}
	slices.Sort(roles)
	return roles, nil
}

// effectiveRoles is rolesOn with the user's groups read.
func (k *Keystone) effectiveRoles(ctx context.Context, user, project string) ([]string, error) {
	groups, err := k.groupsOf(ctx, user)
	if err != nil {
		return nil, err
	}
	return k.rolesOn(ctx, user, groups, project)
}

// appCredRoles is what a token of ac may do given the roles its user holds
// now: its own roles, all of which the user must still hold.
func appCredRoles(ac *identityv1alpha1.ApplicationCredential, held []string) ([]string, error) {
	for _, r := range ac.Spec.Roles {
		if !slices.Contains(held, r) {
			return nil, fmt.Errorf("%w: the application credential's user no longer holds role %s", auth.ErrUnauthorized, r)
		}
	}
	roles := slices.Clone(ac.Spec.Roles)
	slices.Sort(roles)
	return slices.Compact(roles), nil
}
