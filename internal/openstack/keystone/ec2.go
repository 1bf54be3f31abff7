package keystone

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

var _ auth.EC2Credentials = (*Keystone)(nil)

// ec2Secret is the Secret holding an EC2 credential's secret key.
func ec2Secret(access string) types.NamespacedName {
	return types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: identityv1alpha1.EC2SecretPrefix + access}
}

// ec2CredentialID is the id /v3/credentials gives an EC2 credential, as
// Keystone derives it: the SHA-256 of the access key, in hex.
func ec2CredentialID(access string) string {
	sum := sha256.Sum256([]byte(access))
	return hex.EncodeToString(sum[:])
}

// EC2Credential resolves an access key for S3's SigV4 verification: its
// secret key and the identity it acts as, on its project's namespace with
// the roles its user holds there now (directly or through groups). An
// unknown key, or one whose user is disabled or gone, or who holds no role
// on the project any more, is auth.ErrUnauthorized. Results are cached like
// token validations (DefaultValidationCacheTTL).
func (k *Keystone) EC2Credential(ctx context.Context, access string) (string, auth.Identity, error) {
	if access == "" || len(validation.IsDNS1123Subdomain(access)) > 0 {
		return "", auth.Identity{}, auth.ErrUnauthorized
	}
	key := "ec2:" + access
	s, gen, ok := k.cache.get(key)
	if ok {
		return s.secret, s.id, nil
	}
	s, err := k.loadEC2(ctx, access)
	if err != nil {
		return "", auth.Identity{}, err
	}
	k.cache.put(key, gen, s)
	return s.secret, s.id, nil
}

func (k *Keystone) loadEC2(ctx context.Context, access string) (session, error) {
	notFound := func(err error) error {
		if apierrors.IsNotFound(err) {
			return auth.ErrUnauthorized
		}
		return err
	}
	cred := &identityv1alpha1.EC2Credential{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: access}, cred); err != nil {
		return session{}, notFound(err)
	}
	sec := &corev1.Secret{}
	if err := k.c.Get(ctx, ec2Secret(access), sec); err != nil {
		return session{}, notFound(err)
	}
	secret := string(sec.Data[identityv1alpha1.EC2SecretKey])
	if secret == "" {
		return session{}, auth.ErrUnauthorized
	}
	u := &identityv1alpha1.User{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: cred.Spec.User}, u); err != nil {
		return session{}, notFound(err)
	}
	if !u.IsEnabled() || !ownedBy(cred, u) {
		return session{}, auth.ErrUnauthorized
	}
	p := &identityv1alpha1.Project{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: cred.Spec.Project}, p); err != nil {
		return session{}, notFound(err)
	}
	if !p.IsEnabled() {
		return session{}, auth.ErrUnauthorized
	}
	roles, err := k.effectiveRoles(ctx, u.Name, p.Name)
	if err != nil {
		return session{}, err
	}
	if len(roles) == 0 {
		return session{}, fmt.Errorf("%w: no role on the project any more", auth.ErrUnauthorized)
	}
	return session{secret: secret, id: auth.Identity{
		UserID: u.Name, UserName: u.Name,
		DomainID: identityv1alpha1.DefaultDomain, DomainName: identityv1alpha1.DefaultDomainName,
		ProjectID: p.Name, ProjectName: p.Name, Namespace: p.Name, Roles: roles,
	}}, nil
}

// ec2Body is an EC2 credential as OS-EC2 shows it (the secret included,
// as Keystone does).
func ec2Body(cred *identityv1alpha1.EC2Credential, secret, base string) map[string]any {
	return map[string]any{
		"user_id": cred.Spec.User, "tenant_id": cred.Spec.Project, "access": cred.Name, "secret": secret,
		"trust_id": nil,
		"links":    map[string]any{"self": base + "/v3/users/" + cred.Spec.User + "/credentials/OS-EC2/" + cred.Name},
	}
}

// credentialBody is an EC2 credential as /v3/credentials shows it.
func credentialBody(cred *identityv1alpha1.EC2Credential, secret, base string) map[string]any {
	blob, _ := json.Marshal(map[string]any{"access": cred.Name, "secret": secret, "trust_id": nil})
	id := ec2CredentialID(cred.Name)
	return map[string]any{
		"id": id, "type": "ec2", "user_id": cred.Spec.User, "project_id": cred.Spec.Project, "blob": string(blob),
		"links": map[string]any{"self": base + "/v3/credentials/" + id},
	}
}

func (k *Keystone) ec2SecretOf(ctx context.Context, access string) string {
	s := &corev1.Secret{}
	if err := k.c.Get(ctx, ec2Secret(access), s); err != nil {
		return ""
	}
	return string(s.Data[identityv1alpha1.EC2SecretKey])
}

// createEC2 is POST /v3/users/{id}/credentials/OS-EC2 {"tenant_id": P}: a
// user makes a key pair for a project it holds a role on.
func (k *Keystone) createEC2(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	if !k.mayManageCredentials(w, r, user, true) {
		return
	}
	var req struct {
		TenantID string `json:"tenant_id"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.TenantID == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find tenant_id in the request.")
		return
	}
	ctx := r.Context()
	u := &identityv1alpha1.User{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: user}, u); err != nil {
		writeAPIError(w, err, "user: "+user)
		return
	}
	p := &identityv1alpha1.Project{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: req.TenantID}, p); err != nil {
		writeAPIError(w, err, "project: "+req.TenantID)
		return
	}
	roles, err := k.effectiveRoles(ctx, user, p.Name)
	if err != nil {
		writeAPIError(w, err, "role assignments")
		return
	}
	if len(roles) == 0 {
		writeError(w, http.StatusForbidden, "User "+user+" has no role on project "+p.Name+".")
		return
	}
	cred := &identityv1alpha1.EC2Credential{
		ObjectMeta: metav1.ObjectMeta{Name: randomID(), OwnerReferences: userOwner(u)},
		Spec:       identityv1alpha1.EC2CredentialSpec{User: user, Project: p.Name},
	}
	if err := k.c.Create(ctx, cred); err != nil {
		writeAPIError(w, err, "the EC2 credential")
		return
	}
	secret := randomID()
	ctl := true
	key := ec2Secret(cred.Name)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: key.Namespace, Name: key.Name,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: identityv1alpha1.GroupVersion.String(), Kind: "EC2Credential",
				Name: cred.Name, UID: cred.UID, Controller: &ctl,
			}},
		},
		Data: map[string][]byte{identityv1alpha1.EC2SecretKey: []byte(secret)},
	}
	if err := k.c.Create(ctx, s); err != nil {
		_ = k.c.Delete(ctx, cred)
		writeAPIError(w, err, "the secret of the EC2 credential")
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"credential": ec2Body(cred, secret, baseURL(r))})
}

// ec2Of lists user's EC2 credentials, by access key.
func (k *Keystone) ec2Of(ctx context.Context, user string) ([]identityv1alpha1.EC2Credential, error) {
	list := &identityv1alpha1.EC2CredentialList{}
	if err := k.c.List(ctx, list); err != nil {
		return nil, err
	}
	out := slices.DeleteFunc(list.Items, func(c identityv1alpha1.EC2Credential) bool { return user != "" && c.Spec.User != user })
	slices.SortFunc(out, func(a, b identityv1alpha1.EC2Credential) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (k *Keystone) listEC2(w http.ResponseWriter, r *http.Request) {
	user := r.PathValue("id")
	if !mayRead(w, r, user) {
		return
	}
	creds, err := k.ec2Of(r.Context(), user)
	if err != nil {
		writeAPIError(w, err, "EC2 credentials")
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for i := range creds {
		out = append(out, ec2Body(&creds[i], k.ec2SecretOf(r.Context(), creds[i].Name), base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"credentials": out, "links": listLinks(r)})
}

// getEC2 reads user's credential by access key; false: it wrote a 404.
func (k *Keystone) getEC2(w http.ResponseWriter, r *http.Request) (*identityv1alpha1.EC2Credential, bool) {
	access := r.PathValue("access")
	cred := &identityv1alpha1.EC2Credential{}
	if len(validation.IsDNS1123Subdomain(access)) > 0 ||
		k.c.Get(r.Context(), types.NamespacedName{Name: access}, cred) != nil || cred.Spec.User != r.PathValue("id") {
		writeError(w, http.StatusNotFound, "Could not find credential: "+access+".")
		return nil, false
	}
	return cred, true
}

func (k *Keystone) showEC2(w http.ResponseWriter, r *http.Request) {
	if !mayRead(w, r, r.PathValue("id")) {
		return
	}
	if cred, ok := k.getEC2(w, r); ok {
		writeJSON(w, http.StatusOK, map[string]any{"credential": ec2Body(cred, k.ec2SecretOf(r.Context(), cred.Name), baseURL(r))})
	}
}

func (k *Keystone) deleteEC2(w http.ResponseWriter, r *http.Request) {
	if !k.mayManageCredentials(w, r, r.PathValue("id"), true) {
		return
	}
	cred, ok := k.getEC2(w, r)
	if !ok {
		return
	}
	if err := k.c.Delete(r.Context(), cred, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		writeAPIError(w, err, "credential: "+cred.Name)
		return
	}
	key := ec2Secret(cred.Name)
	_ = client.IgnoreNotFound(k.c.Delete(r.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}))
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

// listCredentials is GET /v3/credentials (read-only: EC2 credentials are
// the only kind); a non-admin sees its own.
func (k *Keystone) listCredentials(w http.ResponseWriter, r *http.Request) {
	me := caller(r)
	q := r.URL.Query()
	user := q.Get("user_id")
	if !me.HasRole(identityv1alpha1.RoleAdmin) {
		if user != "" && user != me.UserID {
			writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
			return
		}
		user = me.UserID
	}
	out := []map[string]any{}
	if t := q.Get("type"); t == "" || t == "ec2" {
		creds, err := k.ec2Of(r.Context(), user)
		if err != nil {
			writeAPIError(w, err, "credentials")
			return
		}
		base := baseURL(r)
		for i := range creds {
			out = append(out, credentialBody(&creds[i], k.ec2SecretOf(r.Context(), creds[i].Name), base))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"credentials": out, "links": listLinks(r)})
}

func (k *Keystone) showCredential(w http.ResponseWriter, r *http.Request) {
	me := caller(r)
	user := me.UserID
	if me.HasRole(identityv1alpha1.RoleAdmin) {
		user = ""
	}
	creds, err := k.ec2Of(r.Context(), user)
	if err != nil {
		writeAPIError(w, err, "credentials")
		return
	}
	for i := range creds {
		if ec2CredentialID(creds[i].Name) == r.PathValue("id") {
			writeJSON(w, http.StatusOK, map[string]any{"credential": credentialBody(&creds[i], k.ec2SecretOf(r.Context(), creds[i].Name), baseURL(r))})
			return
		}
	}
	writeError(w, http.StatusNotFound, "Could not find credential: "+r.PathValue("id")+".")
}
