package keystone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// withUser makes project p, user u (password x) with role on p.
func (e *env) withUser(admin, p, u, role string) {
	e.t.Helper()
	if p != "" {
		if code, body, _ := e.do("POST", "/v3/projects", admin, map[string]any{"project": map[string]any{"name": p}}); code != 201 && code != 409 {
			e.t.Fatalf("project %s: %d %v", p, code, body)
		}
	}
	if code, body, _ := e.do("POST", "/v3/users", admin, map[string]any{"user": map[string]any{"name": u, "password": "x"}}); code != 201 && code != 409 {
		e.t.Fatalf("user %s: %d %v", u, code, body)
	}
	if role != "" {
		if code, body, _ := e.do("PUT", "/v3/projects/"+p+"/users/"+u+"/roles/"+role, admin, nil); code != 204 {
			e.t.Fatalf("grant: %d %v", code, body)
		}
	}
}

func appCredAuthBody(cred map[string]any) map[string]any {
	return map[string]any{"auth": map[string]any{"identity": map[string]any{
		"methods": []string{"application_credential"}, "application_credential": cred}}}
}

func TestApplicationCredentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	e.withUser(admin, "p1", "u1", "member")
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/reader", admin, nil); code != 204 {
		t.Fatal(code)
	}
	u1, _ := e.token("u1", "x", projectScope("p1"))

	// A role the token does not hold: 403. Unscoped token: 400.
	if code, _, _ := e.do("POST", "/v3/users/u1/application_credentials", u1, map[string]any{"application_credential": map[string]any{
		"name": "bad", "roles": []any{map[string]any{"name": "admin"}}}}); code != 403 {
		t.Errorf("delegating admin: %d", code)
	}
	un, _ := e.token("u1", "x", "unscoped")
	if code, _, _ := e.do("POST", "/v3/users/u1/application_credentials", un, map[string]any{"application_credential": map[string]any{"name": "x"}}); code != 400 {
		t.Errorf("unscoped: %d", code)
	}
	// Another user's: 403, even for an admin.
	if code, _, _ := e.do("POST", "/v3/users/u1/application_credentials", admin, map[string]any{"application_credential": map[string]any{"name": "x"}}); code != 403 {
		t.Errorf("admin creates u1's: %d", code)
	}

	code, body, _ := e.do("POST", "/v3/users/u1/application_credentials", u1, map[string]any{"application_credential": map[string]any{
		"name": "ci", "description": "d", "roles": []any{map[string]any{"name": "reader"}}, "expires_at": "2026-01-01T02:00:00"}})
	if code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	ac := body["application_credential"].(map[string]any)
	id, secret := ac["id"].(string), ac["secret"].(string)
	if len(secret) < 32 || ac["project_id"] != "p1" || ac["expires_at"] != "2026-01-01T02:00:00.000000Z" || len(ac["roles"].([]any)) != 1 {
		t.Errorf("create body %v", ac)
	}
	if code, _, _ := e.do("POST", "/v3/users/u1/application_credentials", u1, map[string]any{"application_credential": map[string]any{"name": "ci"}}); code != 409 {
		t.Errorf("duplicate name: %d", code)
	}
	// Stored as a hash only.
	obj := &identityv1alpha1.ApplicationCredential{}
	if err := e.c.Get(ctx, types.NamespacedName{Name: id}, obj); err != nil {
		t.Fatal(err)
	}
	s := &corev1.Secret{}
	if err := e.c.Get(ctx, appCredSecret(id), s); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(obj)
	if bytes.Contains(raw, []byte(secret)) || bytes.Contains(s.Data[identityv1alpha1.PasswordHashKey], []byte(secret)) || !passwordMatches(s.Data[identityv1alpha1.PasswordHashKey], secret) {
		t.Errorf("secret stored in clear: %s / %q", raw, s.Data)
	}
	// Shown and listed without the secret.
	code, body, _ = e.do("GET", "/v3/users/u1/application_credentials/"+id, u1, nil)
	if code != 200 || body["application_credential"].(map[string]any)["secret"] != nil {
		t.Errorf("show: %d %v", code, body)
	}
	code, body, _ = e.do("GET", "/v3/users/u1/application_credentials?name=ci", admin, nil)
	if code != 200 || len(body["application_credentials"].([]any)) != 1 {
		t.Errorf("list: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/users/admin/application_credentials/"+id, admin, nil); code != 404 {
		t.Errorf("under another user: %d", code)
	}

	// Tokens: by id, by name and user; its project and roles only.
	for name, cred := range map[string]map[string]any{
		"id":   {"id": id, "secret": secret},
		"name": {"name": "ci", "secret": secret, "user": map[string]any{"name": "u1", "domain": map[string]any{"id": "default"}}},
	} {
		code, body, hdr := e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(cred))
		if code != 201 {
			t.Fatalf("%s: %d %v", name, code, body)
		}
		tok := body["token"].(map[string]any)
		if tok["project"].(map[string]any)["id"] != "p1" || len(tok["roles"].([]any)) != 1 || tok["roles"].([]any)[0].(map[string]any)["name"] != "reader" ||
			tok["application_credential"].(map[string]any)["id"] != id || tok["methods"].([]any)[0] != "application_credential" ||
			tok["expires_at"] != "2026-01-01T01:00:00.000000Z" {
			t.Errorf("%s: token %v", name, tok)
		}
		got, err := e.k.Authenticate(ctx, hdr.Get("X-Subject-Token"))
		if err != nil || !slices.Equal(got.Roles, []string{"reader"}) || got.Namespace != "p1" || got.HasRole("member") {
			t.Errorf("%s: Authenticate = %+v, %v", name, got, err)
		}
		resp, ok, err := e.k.AuthenticateToken(ctx, hdr.Get("X-Subject-Token"))
		if err != nil || !ok || resp.User.GetName() != "keystone-appcred:"+id || resp.User.GetExtra()[ExtraUser][0] != "u1" {
			t.Errorf("%s: AuthenticateToken = %+v, %v, %v", name, resp, ok, err)
		}
	}
	for name, cred := range map[string]map[string]any{
		"wrong secret": {"id": id, "secret": "nope"},
		"unknown id":   {"id": "0123", "secret": secret},
		"bad id":       {"id": "NOT a name", "secret": secret},
		"other user":   {"name": "ci", "secret": secret, "user": map[string]any{"id": "admin"}},
	} {
		if code, body, _ := e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(cred)); code != 401 {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
	_, body, hdr := e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(map[string]any{"id": id, "secret": secret}))
	acTok := hdr.Get("X-Subject-Token")
	// A restricted credential's token cannot make credentials.
	if code, _, _ := e.do("POST", "/v3/users/u1/application_credentials", acTok, map[string]any{"application_credential": map[string]any{"name": "more"}}); code != 403 {
		t.Errorf("restricted token creates a credential: %d", code)
	}
	if code, _, _ := e.do("POST", "/v3/users/u1/credentials/OS-EC2", acTok, map[string]any{"tenant_id": "p1"}); code != 403 {
		t.Errorf("restricted token creates an EC2 credential: %d", code)
	}
	// Nor be rescoped.
	if code, _, _ := e.do("POST", "/v3/auth/tokens", "", map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"token"}, "token": map[string]any{"id": acTok}},
		"scope":    map[string]any{"project": map[string]any{"id": "p1"}}}}); code != 401 {
		t.Errorf("rescoped: %d", code)
	}

	// The user losing the delegated role ends it (through this Keystone:
	// at once, the cache emptied).
	if code, _, _ := e.do("DELETE", "/v3/projects/p1/users/u1/roles/reader", admin, nil); code != 204 {
		t.Fatal(code)
	}
	if _, err := e.k.Authenticate(ctx, acTok); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("token of a credential whose role is gone: %v", err)
	}
	if code, _, _ := e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(map[string]any{"id": id, "secret": secret})); code != 401 {
		t.Errorf("credential whose role is gone: %d", code)
	}
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/reader", admin, nil); code != 204 {
		t.Fatal(code)
	}
	if _, err := e.k.Authenticate(ctx, acTok); err != nil {
		t.Errorf("role back: %v", err)
	}
	// Expiry.
	e.clk.t = e.clk.t.Add(2*time.Hour + time.Second)
	if code, _, _ := e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(map[string]any{"id": id, "secret": secret})); code != 401 {
		t.Errorf("expired credential: %d", code)
	}
	e.clk.t = e.clk.t.Add(-2 * time.Hour)
	// Deletion ends its tokens.
	u1, _ = e.token("u1", "x", projectScope("p1"))
	if code, _, _ := e.do("DELETE", "/v3/users/u1/application_credentials/"+id, u1, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if _, err := e.k.Authenticate(ctx, acTok); err == nil {
		t.Error("a deleted credential's token authenticates")
	}
	if err := e.c.Get(ctx, appCredSecret(id), s); err == nil {
		t.Error("the secret outlives the credential")
	}
	// A given secret, no expiry, unrestricted.
	code, body, _ = e.do("POST", "/v3/users/u1/application_credentials", u1, map[string]any{"application_credential": map[string]any{
		"name": "mine", "secret": "s3cret", "unrestricted": true}})
	if code != 201 || body["application_credential"].(map[string]any)["secret"] != "s3cret" || body["application_credential"].(map[string]any)["expires_at"] != nil {
		t.Fatalf("given secret: %d %v", code, body)
	}
	code, body, hdr = e.do("POST", "/v3/auth/tokens", "", appCredAuthBody(map[string]any{"id": body["application_credential"].(map[string]any)["id"], "secret": "s3cret"}))
	if code != 201 || len(body["token"].(map[string]any)["roles"].([]any)) != 2 {
		t.Fatalf("unrestricted: %d %v", code, body)
	}
	if code, body, _ := e.do("POST", "/v3/users/u1/credentials/OS-EC2", hdr.Get("X-Subject-Token"), map[string]any{"tenant_id": "p1"}); code != 201 {
		t.Errorf("unrestricted token creates an EC2 credential: %d %v", code, body)
	}
}

func TestGroups(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	e.withUser(admin, "p1", "u1", "")
	if code, body, _ := e.do("POST", "/v3/groups", admin, map[string]any{"group": map[string]any{"name": "devs", "description": "d"}}); code != 201 || body["group"].(map[string]any)["id"] != "devs" {
		t.Fatalf("create group: %d %v", code, body)
	}
	if code, _, _ := e.do("POST", "/v3/groups", admin, map[string]any{"group": map[string]any{"name": "devs"}}); code != 409 {
		t.Errorf("duplicate group: %d", code)
	}
	if code, _, _ := e.do("PUT", "/v3/projects/p1/groups/devs/roles/member", admin, nil); code != 204 {
		t.Fatalf("group grant: %d", code)
	}
	if code, _, _ := e.do("HEAD", "/v3/projects/p1/groups/devs/roles/member", admin, nil); code != 204 {
		t.Errorf("check group grant: %d", code)
	}
	// Not a member yet: no access.
	if code, _, _ := e.do("POST", "/v3/auth/tokens", "", passwordAuth("u1", "x", projectScope("p1"))); code != 401 {
		t.Errorf("non-member scoped: %d", code)
	}
	if code, _, _ := e.do("HEAD", "/v3/groups/devs/users/u1", admin, nil); code != 404 {
		t.Errorf("HEAD before: %d", code)
	}
	if code, _, _ := e.do("PUT", "/v3/groups/devs/users/ghost", admin, nil); code != 404 {
		t.Errorf("unknown user: %d", code)
	}
	if code, _, _ := e.do("PUT", "/v3/groups/devs/users/u1", admin, nil); code != 204 {
		t.Fatalf("add member: %d", code)
	}
	if code, _, _ := e.do("PUT", "/v3/groups/devs/users/u1", admin, nil); code != 204 {
		t.Errorf("add member again: %d", code)
	}
	if code, _, _ := e.do("HEAD", "/v3/groups/devs/users/u1", admin, nil); code != 204 {
		t.Errorf("HEAD: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/groups/devs/users", admin, nil); code != 200 || len(body["users"].([]any)) != 1 {
		t.Errorf("members: %d %v", code, body)
	}
	u1, tok := e.token("u1", "x", projectScope("p1"))
	if tok["roles"].([]any)[0].(map[string]any)["name"] != "member" {
		t.Errorf("roles through the group: %v", tok["roles"])
	}
	if code, body, _ := e.do("GET", "/v3/users/u1/groups", u1, nil); code != 200 || len(body["groups"].([]any)) != 1 {
		t.Errorf("u1's groups: %d %v", code, body)
	}
	if code, body, _ := e.do("GET", "/v3/auth/projects", u1, nil); code != 200 || len(body["projects"].([]any)) != 1 {
		t.Errorf("u1's projects: %d %v", code, body)
	}
	resp, ok, err := e.k.AuthenticateToken(ctx, u1)
	if err != nil || !ok || !slices.Contains(resp.User.GetGroups(), "keystone-group:devs") || resp.User.GetName() != "keystone:u1" {
		t.Errorf("Kubernetes user %+v %v %v", resp, ok, err)
	}
	code, body, _ := e.do("GET", "/v3/role_assignments?user.id=u1&effective", admin, nil)
	if ras := body["role_assignments"].([]any); code != 200 || len(ras) != 1 || ras[0].(map[string]any)["links"].(map[string]any)["membership"] == nil {
		t.Errorf("effective: %d %v", code, body)
	}
	code, body, _ = e.do("GET", "/v3/role_assignments?group.id=devs", admin, nil)
	if ras := body["role_assignments"].([]any); code != 200 || len(ras) != 1 || ras[0].(map[string]any)["group"] == nil {
		t.Errorf("group's: %d %v", code, body)
	}
	// Leaving the group ends the token's role (this Keystone: at once).
	if code, _, _ := e.do("DELETE", "/v3/groups/devs/users/u1", admin, nil); code != 204 {
		t.Fatalf("remove member: %d", code)
	}
	if _, err := e.k.Authenticate(ctx, u1); err == nil {
		t.Error("token outlives the membership")
	}
	if code, _, _ := e.do("DELETE", "/v3/groups/devs/users/u1", admin, nil); code != 404 {
		t.Errorf("remove again: %d", code)
	}
	if code, _, _ := e.do("GET", "/v3/groups", u1, nil); code != 401 && code != 403 {
		t.Errorf("list groups as u1: %d", code)
	}
	if code, _, _ := e.do("DELETE", "/v3/groups/devs", admin, nil); code != 204 {
		t.Errorf("delete group: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/role_assignments?group.id=devs", admin, nil); len(body["role_assignments"].([]any)) != 0 {
		t.Errorf("assignments outlive the group: %d %v", code, body)
	}
}

func TestEC2Credentials(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	e.withUser(admin, "p1", "u1", "member")
	e.withUser(admin, "", "u2", "")
	u1, _ := e.token("u1", "x", projectScope("p1"))
	if code, _, _ := e.do("POST", "/v3/users/u1/credentials/OS-EC2", u1, map[string]any{"tenant_id": "admin"}); code != 403 {
		t.Errorf("a project without a role: %d", code)
	}
	u2, _ := e.token("u2", "x", nil)
	if code, _, _ := e.do("POST", "/v3/users/u1/credentials/OS-EC2", u2, map[string]any{"tenant_id": "p1"}); code != 403 {
		t.Errorf("another user's: %d", code)
	}
	code, body, _ := e.do("POST", "/v3/users/u1/credentials/OS-EC2", u1, map[string]any{"tenant_id": "p1"})
	if code != 201 {
		t.Fatalf("create: %d %v", code, body)
	}
	cred := body["credential"].(map[string]any)
	access, secret := cred["access"].(string), cred["secret"].(string)
	if access == "" || secret == "" || cred["tenant_id"] != "p1" || cred["user_id"] != "u1" {
		t.Errorf("create body %v", cred)
	}
	// The CR holds no secret.
	obj := &identityv1alpha1.EC2Credential{}
	if err := e.c.Get(ctx, types.NamespacedName{Name: access}, obj); err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(obj); bytes.Contains(raw, []byte(secret)) {
		t.Errorf("secret in the CR: %s", raw)
	}
	if code, body, _ := e.do("GET", "/v3/users/u1/credentials/OS-EC2", u1, nil); code != 200 || len(body["credentials"].([]any)) != 1 ||
		body["credentials"].([]any)[0].(map[string]any)["secret"] != secret {
		t.Errorf("list: %d %v", code, body)
	}
	if code, body, _ := e.do("GET", "/v3/users/u1/credentials/OS-EC2/"+access, admin, nil); code != 200 || body["credential"].(map[string]any)["access"] != access {
		t.Errorf("show: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/users/u1/credentials/OS-EC2/"+access, u2, nil); code != 403 {
		t.Errorf("show by another: %d", code)
	}
	if code, _, _ := e.do("GET", "/v3/users/u2/credentials/OS-EC2/"+access, admin, nil); code != 404 {
		t.Errorf("under another user: %d", code)
	}
	code, body, _ = e.do("GET", "/v3/credentials", u1, nil)
	if code != 200 || len(body["credentials"].([]any)) != 1 || body["credentials"].([]any)[0].(map[string]any)["type"] != "ec2" {
		t.Errorf("/v3/credentials: %d %v", code, body)
	}
	credID := body["credentials"].([]any)[0].(map[string]any)["id"].(string)
	if code, _, _ := e.do("GET", "/v3/credentials/"+credID, u1, nil); code != 200 {
		t.Errorf("/v3/credentials/id: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/credentials", u2, nil); code != 200 || len(body["credentials"].([]any)) != 0 {
		t.Errorf("u2's /v3/credentials: %d %v", code, body)
	}

	// What S3 sees.
	gotSecret, id, err := e.k.EC2Credential(ctx, access)
	if err != nil || gotSecret != secret || id.UserID != "u1" || id.ProjectID != "p1" || id.Namespace != "p1" || !slices.Equal(id.Roles, []string{"member"}) {
		t.Errorf("EC2Credential = %q %+v %v", gotSecret, id, err)
	}
	for _, bad := range []string{"", "nope", "UPPER/../x", access + "0"} {
		if _, _, err := e.k.EC2Credential(ctx, bad); !errors.Is(err, auth.ErrUnauthorized) {
			t.Errorf("EC2Credential(%q): %v", bad, err)
		}
	}
	// Roles are the user's current ones.
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/admin", admin, nil); code != 204 {
		t.Fatal(code)
	}
	if _, id, _ := e.k.EC2Credential(ctx, access); !slices.Equal(id.Roles, []string{"admin", "member"}) {
		t.Errorf("roles after a grant: %v", id.Roles)
	}
	for _, r := range []string{"admin", "member"} {
		if code, _, _ := e.do("DELETE", "/v3/projects/p1/users/u1/roles/"+r, admin, nil); code != 204 {
			t.Fatal(code)
		}
	}
	if _, _, err := e.k.EC2Credential(ctx, access); !errors.Is(err, auth.ErrUnauthorized) {
		t.Errorf("no role left: %v", err)
	}
	if code, _, _ := e.do("DELETE", "/v3/users/u1/credentials/OS-EC2/"+access, admin, nil); code != 204 {
		t.Errorf("delete: %d", code)
	}
	// Deleting the project deletes its credentials.
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/member", admin, nil); code != 204 {
		t.Fatal(code)
	}
	u1, _ = e.token("u1", "x", projectScope("p1"))
	_, body, _ = e.do("POST", "/v3/users/u1/credentials/OS-EC2", u1, map[string]any{"tenant_id": "p1"})
	other := body["credential"].(map[string]any)["access"].(string)
	if code, _, _ := e.do("DELETE", "/v3/projects/p1", admin, nil); code != 204 {
		t.Fatal(code)
	}
	if err := e.c.Get(ctx, types.NamespacedName{Name: other}, &identityv1alpha1.EC2Credential{}); err == nil {
		t.Error("an EC2 credential outlives its project")
	}
	if code, _, _ := e.do("DELETE", "/v3/users/u1/credentials/OS-EC2/"+access, admin, nil); code != 404 {
		t.Errorf("delete again: %d", code)
	}
	if err := e.c.Get(ctx, ec2Secret(access), &corev1.Secret{}); err == nil {
		t.Error("the secret outlives the credential")
	}
}

// TestValidationCache: a cached validation reads nothing; a change made
// elsewhere (here: the client directly) shows within the TTL, one made
// through Keystone at once; revocation at once.
func TestValidationCache(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	e.withUser(admin, "p1", "u1", "member")
	u1, _ := e.token("u1", "x", projectScope("p1"))

	var reads atomic.Int64
	counting := interceptor.NewClient(e.c.(client.WithWatch), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			reads.Add(1)
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			reads.Add(1)
			return c.List(ctx, list, opts...)
		},
	})
	e.k.c = counting
	e.k.revoked.c = counting
	if _, err := e.k.Authenticate(ctx, u1); err != nil {
		t.Fatal(err)
	}
	first := reads.Load()
	for range 10 {
		if _, err := e.k.Authenticate(ctx, u1); err != nil {
			t.Fatal(err)
		}
	}
	if n := reads.Load() - first; n != 0 || first == 0 {
		t.Errorf("reads: first validation %d, ten cached ones %d", first, n)
	}
	// Removed behind Keystone's back: valid until the TTL passes.
	ra := &identityv1alpha1.RoleAssignment{}
	ra.Name = assignmentName("u1", "p1", "member")
	if err := e.c.Delete(ctx, ra); err != nil {
		t.Fatal(err)
	}
	if _, err := e.k.Authenticate(ctx, u1); err != nil {
		t.Errorf("within the TTL: %v", err)
	}
	e.clk.t = e.clk.t.Add(DefaultValidationCacheTTL)
	if _, err := e.k.Authenticate(ctx, u1); err == nil {
		t.Error("role removal not seen after the TTL")
	}
	// Revocation: at once, cached or not.
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/member", admin, nil); code != 204 {
		t.Fatal(code)
	}
	if _, err := e.k.Authenticate(ctx, u1); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.do("DELETE", "/v3/auth/tokens", admin, nil, "X-Subject-Token", u1); code != 204 {
		t.Fatal(code)
	}
	if _, err := e.k.Authenticate(ctx, u1); err == nil {
		t.Error("a revoked cached token authenticates")
	}
	// Disabled through Keystone: at once.
	u1, _ = e.token("u1", "x", projectScope("p1"))
	if _, err := e.k.Authenticate(ctx, u1); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.do("PATCH", "/v3/users/u1", admin, map[string]any{"user": map[string]any{"enabled": false}}); code != 200 {
		t.Fatal(code)
	}
	if _, err := e.k.Authenticate(ctx, u1); err == nil {
		t.Error("a disabled user's cached token authenticates")
	}
}

func TestSessionCacheBounds(t *testing.T) {
	clk := &clock{t: time.Unix(0, 0)}
	sc := &sessionCache{ttl: time.Second, now: clk.now}
	_, gen, _ := sc.get("a")
	sc.flush()
	sc.put("a", gen, session{})
	if _, _, ok := sc.get("a"); ok {
		t.Error("stored across a flush")
	}
	_, gen, _ = sc.get("a")
	for i := range maxCached + 10 {
		sc.put(string(rune(i)), gen, session{})
	}
	if len(sc.m) > maxCached {
		t.Errorf("%d entries", len(sc.m))
	}
	off := &sessionCache{ttl: -1, now: clk.now}
	off.put("a", 0, session{})
	if _, _, ok := off.get("a"); ok {
		t.Error("disabled cache hit")
	}
}

func TestParseExpiry(t *testing.T) {
	want := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, s := range []string{"2026-03-04T05:06:07", "2026-03-04T05:06:07Z", "2026-03-04T05:06:07.000000Z", "2026-03-04 05:06:07", "2026-03-04T06:06:07+01:00"} {
		if got, err := parseExpiry(s); err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := parseExpiry("tomorrow"); err == nil {
		t.Error("parsed junk")
	}
}
