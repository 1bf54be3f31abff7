package keystone

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// appCredAuth is auth.identity.application_credential: an id, or a name
// and its user, and the secret.
type appCredAuth struct {
	ID     string    `json:"id"`
	Name   string    `json:"name"`
	Secret string    `json:"secret"`
	User   *nameOrID `json:"user"`
}

// appCredSecret is the Secret holding an application credential's hash.
func appCredSecret(id string) types.NamespacedName {
	return types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: identityv1alpha1.ApplicationCredentialSecretPrefix + id}
}

// ownedBy reports whether obj belongs to this incarnation of u (a user
// deleted and made again under the same name does not inherit it).
func ownedBy(obj metav1.Object, u *identityv1alpha1.User) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind == "User" && ref.Name == u.Name {
			return ref.UID == u.UID
		}
	}
	return true // made through kubectl without an owner: the name decides
}

func userOwner(u *identityv1alpha1.User) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: identityv1alpha1.GroupVersion.String(), Kind: "User", Name: u.Name, UID: u.UID}}
}

// checkAppCred finds the credential a token request names and checks its
// secret and expiry.
func (k *Keystone) checkAppCred(ctx context.Context, req appCredAuth) (*identityv1alpha1.ApplicationCredential, error) {
	denied := unauthorized("The request you have made requires authentication.")
	var ac *identityv1alpha1.ApplicationCredential
	switch {
	case req.ID != "":
		ac = &identityv1alpha1.ApplicationCredential{}
		if err := k.c.Get(ctx, types.NamespacedName{Name: req.ID}, ac); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
				return nil, denied
			}
			return nil, err
		}
	case req.Name != "" && req.User != nil:
		user := resolve(*req.User, true)
		if user == "" {
			return nil, denied
		}
		found, err := k.findAppCred(ctx, user, req.Name)
		if err != nil {
			return nil, err
		}
		if found == nil {
			return nil, denied
		}
		ac = found
	default:
		return nil, authError{http.StatusBadRequest, "Expecting to find application_credential id, or name and user, in the request."}
	}
	if ac.Spec.ExpiresAt != nil && !k.now().Before(ac.Spec.ExpiresAt.Time) {
		return nil, unauthorized("The application credential has expired.")
	}
	s := &corev1.Secret{}
	if err := k.c.Get(ctx, appCredSecret(ac.Name), s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, denied
		}
		return nil, err
	}
	if !passwordMatches(s.Data[identityv1alpha1.PasswordHashKey], req.Secret) {
		return nil, denied
	}
	return ac, nil
}

// findAppCred is user's credential named name, or nil.
func (k *Keystone) findAppCred(ctx context.Context, user, name string) (*identityv1alpha1.ApplicationCredential, error) {
	list := &identityv1alpha1.ApplicationCredentialList{}
	if err := k.c.List(ctx, list); err != nil {
		return nil, fmt.Errorf("list application credentials: %w", err)
	}
	for i := range list.Items {
		if list.Items[i].Spec.User == user && list.Items[i].Spec.Name == name {
			return &list.Items[i], nil
		}
	}
	return nil, nil
}

// liveAppCred reads a token's application credential: it must still exist,
// be u's and not have expired.
func (k *Keystone) liveAppCred(ctx context.Context, id string, u *identityv1alpha1.User) (*identityv1alpha1.ApplicationCredential, error) {
	ac := &identityv1alpha1.ApplicationCredential{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: id}, ac); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w: the application credential is gone", auth.ErrUnauthorized)
		}
		return nil, err
	}
	if ac.Spec.User != u.Name || !ownedBy(ac, u) {
		return nil, auth.ErrUnauthorized
	}
	if ac.Spec.ExpiresAt != nil && !k.now().Before(ac.Spec.ExpiresAt.Time) {
		return nil, fmt.Errorf("%w: the application credential has expired", auth.ErrUnauthorized)
	}
	return ac, nil
}

// appCredRef is a token body's "application_credential".
func appCredRef(ac *identityv1alpha1.ApplicationCredential) map[string]any {
	return map[string]any{"id": ac.Name, "name": ac.Spec.Name, "restricted": !ac.Spec.Unrestricted}
}

// appCredBody is an application credential as Keystone shows it; secret
// only in the answer to its creation.
func appCredBody(ac *identityv1alpha1.ApplicationCredential, base, secret string) map[string]any {
	roles := []map[string]any{}
	for _, r := range ac.Spec.Roles {
		roles = append(roles, map[string]any{"id": r, "name": r, "domain_id": nil})
	}
	var expires any
	if ac.Spec.ExpiresAt != nil {
		expires = formatTime(ac.Spec.ExpiresAt.Time)
	}
	b := map[string]any{
		"id": ac.Name, "name": ac.Spec.Name, "description": ac.Spec.Description,
		"user_id": ac.Spec.User, "project_id": ac.Spec.Project, "roles": roles,
		"expires_at": expires, "unrestricted": ac.Spec.Unrestricted, "access_rules": []any{},
		"links": map[string]any{"self": base + "/v3/users/" + ac.Spec.User + "/application_credentials/" + ac.Name},
	}
	if secret != "" {
		b["secret"] = secret
	}
	return b
}

// callerAppCred is the application credential the caller's token came
// from, "" for another token.
func (k *Keystone) callerAppCred(r *http.Request) string {
	c, err := k.signer.verify(r.Header.Get("X-Auth-Token"))
	if err != nil {
		return ""
	}
	return c.AppCred
}

// mayManageCredentials writes 403 unless the caller may create or delete
// user's application or EC2 credentials: user itself (not through a
// restricted application credential), or for deletion an admin.
func (k *Keystone) mayManageCredentials(w http.ResponseWriter, r *http.Request, user string, adminToo bool) bool {
	me := caller(r)
	self := me.UserID == user
	if !self && !(adminToo && me.HasRole(identityv1alpha1.RoleAdmin)) {
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
		return false
	}
	if id := k.callerAppCred(r); id != "" {
		ac := &identityv1alpha1.ApplicationCredential{}
		if err := k.c.Get(r.Context(), types.NamespacedName{Name: id}, ac); err != nil || !ac.Spec.Unrestricted {
			writeError(w, http.StatusForbidden, "Using a restricted application credential to manage credentials is not allowed.")
			return false
		}
	}
	return true
}

// mayRead writes 403 unless the caller is user or an admin.
func mayRead(w http.ResponseWriter, r *http.Request, user string) bool {
	me := caller(r)
	if me.UserID == user || me.HasRole(identityv1alpha1.RoleAdmin) {
		return true
	}
	writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
	return false
}

// parseExpiry reads an expires_at as clients send it (ISO 8601, with or
// without fraction and zone; no zone is UTC).
func parseExpiry(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse expires_at %q", s)
}

func randomSecret() string {
	b := make([]byte, 48)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

type appCredRequest struct {
	ApplicationCredential *struct {
		Name         string            `json:"name"`
		Description  string            `json:"description"`
		Secret       string            `json:"secret"`
		ExpiresAt    *string           `json:"expires_at"`
		Roles        []nameOrID        `json:"roles"`
		Unrestricted bool              `json:"unrestricted"`
		AccessRules  []json.RawMessage `json:"access_rules"`
	} `json:"application_credential"`
}

// createAppCred is POST /v3/users/{id}/application_credentials: a user
// delegates some of its current token's roles on its project.
func (k *Keystone) createAppCred(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	if !k.mayManageCredentials(w, r, user, false) {
		return
	}
	me := caller(r)
	if me.ProjectID == "" {
		writeError(w, http.StatusBadRequest, "An application credential is made with a project-scoped token: it acts on that project.")
		return
	}
	var req appCredRequest
	if !readJSON(w, r, &req) {
		return
	}
	in := req.ApplicationCredential
	if in == nil || in.Name == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find name in application_credential.")
		return
	}
	if len(in.AccessRules) > 0 {
		writeError(w, http.StatusBadRequest, "Access rules are not supported.")
		return
	}
	// Roles: a subset of the token's (all of them by default).
	roles := slices.Clone(me.Roles)
	if len(in.Roles) > 0 {
		roles = nil
		for _, ref := range in.Roles {
			name := ref.ID
			if name == "" {
				name = ref.Name
			}
			if !slices.Contains(me.Roles, name) {
				writeError(w, http.StatusForbidden, "You cannot delegate role "+name+": your token does not hold it on project "+me.ProjectID+".")
				return
			}
			if !slices.Contains(roles, name) {
				roles = append(roles, name)
			}
		}
	}
	slices.Sort(roles)
	ctx := r.Context()
	u := &identityv1alpha1.User{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: user}, u); err != nil {
		writeAPIError(w, err, "user: "+user)
		return
	}
	ac := &identityv1alpha1.ApplicationCredential{
		ObjectMeta: metav1.ObjectMeta{Name: randomID(), OwnerReferences: userOwner(u)},
		Spec: identityv1alpha1.ApplicationCredentialSpec{
			User: user, Name: in.Name, Description: in.Description, Project: me.ProjectID,
			Roles: roles, Unrestricted: in.Unrestricted,
		},
	}
	if in.ExpiresAt != nil && *in.ExpiresAt != "" {
		t, err := parseExpiry(*in.ExpiresAt)
		if err != nil {
			writeError(w, http.StatusBadRequest, "Invalid input for field 'expires_at': "+err.Error())
			return
		}
		if !t.After(k.now()) {
			writeError(w, http.StatusBadRequest, "The application credential's expires_at is in the past.")
			return
		}
		mt := metav1.NewTime(t.Truncate(time.Second))
		ac.Spec.ExpiresAt = &mt
	}
	existing, err := k.findAppCred(ctx, user, in.Name)
	if err != nil {
		writeAPIError(w, err, "application credentials")
		return
	}
	if existing != nil {
		writeError(w, http.StatusConflict, "Conflict occurred attempting to store application_credential - Duplicate entry found with name "+in.Name+".")
		return
	}
	secret := in.Secret
	if secret == "" {
		secret = randomSecret()
	}
	hash, err := hashPassword(secret)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Invalid secret: "+err.Error())
		return
	}
	if err := k.c.Create(ctx, ac); err != nil {
		writeAPIError(w, err, "application credential "+in.Name)
		return
	}
	ctl := true
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: appCredSecret(ac.Name).Namespace, Name: appCredSecret(ac.Name).Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: identityv1alpha1.GroupVersion.String(), Kind: "ApplicationCredential",
				Name: ac.Name, UID: ac.UID, Controller: &ctl,
			}},
		},
		Data: map[string][]byte{identityv1alpha1.PasswordHashKey: hash},
	}
	if err := k.c.Create(ctx, s); err != nil {
		_ = k.c.Delete(ctx, ac) // no use without its secret
		writeAPIError(w, err, "the secret of application credential "+in.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"application_credential": appCredBody(ac, baseURL(r), secret)})
}

func (k *Keystone) listAppCreds(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	if !mayRead(w, r, user) {
		return
	}
	list := &identityv1alpha1.ApplicationCredentialList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "application credentials")
		return
	}
	name := r.URL.Query().Get("name")
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		ac := &list.Items[i]
		if ac.Spec.User != user || (name != "" && ac.Spec.Name != name) {
			continue
		}
		out = append(out, appCredBody(ac, base, ""))
	}
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["name"].(string), b["name"].(string)) })
	writeJSON(w, http.StatusOK, map[string]any{"application_credentials": out, "links": listLinks(r)})
}

// getAppCred reads user's credential id; false means it wrote the error.
func (k *Keystone) getAppCred(w http.ResponseWriter, r *http.Request) (*identityv1alpha1.ApplicationCredential, bool) {
	user, id := r.PathValue("id"), r.PathValue("ac")
	ac := &identityv1alpha1.ApplicationCredential{}
	err := k.c.Get(r.Context(), types.NamespacedName{Name: id}, ac)
	if err == nil && ac.Spec.User != user {
		err = apierrors.NewNotFound(identityv1alpha1.Resource("applicationcredentials"), id)
	}
	if err != nil {
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			err = apierrors.NewNotFound(identityv1alpha1.Resource("applicationcredentials"), id)
		}
		writeAPIError(w, err, "application credential: "+id)
		return nil, false
	}
	return ac, true
}

func (k *Keystone) showAppCred(w http.ResponseWriter, r *http.Request) {
	if !mayRead(w, r, r.PathValue("id")) {
		return
	}
	if ac, ok := k.getAppCred(w, r); ok {
		writeJSON(w, http.StatusOK, map[string]any{"application_credential": appCredBody(ac, baseURL(r), "")})
	}
}

func (k *Keystone) deleteAppCred(w http.ResponseWriter, r *http.Request) {
	if !k.mayManageCredentials(w, r, r.PathValue("id"), true) {
		return
	}
	ac, ok := k.getAppCred(w, r)
	if !ok {
		return
	}
	// Its Secret and RoleBindings go with it (owner references).
	if err := k.c.Delete(r.Context(), ac, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		writeAPIError(w, err, "application credential: "+ac.Name)
		return
	}
	_ = client.IgnoreNotFound(k.c.Delete(r.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
		Namespace: appCredSecret(ac.Name).Namespace, Name: appCredSecret(ac.Name).Name}}))
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}
