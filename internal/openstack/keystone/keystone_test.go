package keystone

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

func TestSignVerify(t *testing.T) {
	s := signer{key: bytes.Repeat([]byte{7}, 32)}
	c := claims{ID: "abc", User: "u", Project: "p", Methods: []string{"password"}, IssuedAt: 1, Expires: 2}
	tok, err := s.sign(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.verify(tok)
	if err != nil || got.ID != c.ID || got.User != c.User || got.Project != c.Project || got.Expires != 2 {
		t.Fatalf("verify = %+v, %v", got, err)
	}
	body, sig, _ := strings.Cut(tok, ".")
	other, _ := signer{key: bytes.Repeat([]byte{8}, 32)}.sign(c)
	for name, bad := range map[string]string{
		"empty":         "",
		"no signature":  body,
		"bad base64":    body + ".!!!",
		"other key":     other,
		"tampered body": strings.Replace(body, body[len(body)-3:], "AAA", 1) + "." + sig,
		"swapped":       sig + "." + body,
	} {
		if _, err := s.verify(bad); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

func TestRevokedListFormat(t *testing.T) {
	m := map[string]time.Time{"a": time.Unix(100, 0), "b": time.Unix(200, 0)}
	got := parseRevoked(formatRevoked(m))
	if len(got) != 2 || !got["a"].Equal(m["a"]) || !got["b"].Equal(m["b"]) {
		t.Errorf("round trip %v", got)
	}
	if got := parseRevoked(map[string][]byte{"x": []byte("junk")}); len(got) != 0 {
		t.Errorf("junk parsed: %v", got)
	}
}

func TestAssignmentNameUnambiguous(t *testing.T) {
	if assignmentName("a.b", "c", "d") == assignmentName("a", "b.c", "d") ||
		assignmentName("a.b", "c", "d") == assignmentName("a", "b", "c.d") {
		t.Error("assignment names collide")
	}
	if n := assignmentName("x", "y", "z"); n != assignmentName("x", "y", "z") || len(n) > 63 {
		t.Errorf("name %q", n)
	}
}

// clock is a settable test clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type env struct {
	t   *testing.T
	srv *httptest.Server
	k   *Keystone
	c   client.Client
	clk *clock
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := identityv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).Build()
	ctx := context.Background()
	if err := Bootstrap(ctx, c, "secret"); err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if err := Bootstrap(ctx, c, "secret"); err != nil {
		t.Fatalf("second Bootstrap: %v", err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	k, err := New(ctx, Config{Client: c, Now: clk.now, Catalog: []Endpoint{{Type: "identity", Name: "keystone", URL: "https://x/identity/v3"}}})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/identity/", http.StripPrefix("/identity", k.Handler()))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, k: k, c: c, clk: clk}
}

// do sends a request; it returns the status, the decoded body and the
// headers.
func (e *env) do(method, path, token string, body any, hdr ...string) (int, map[string]any, http.Header) {
	e.t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, e.srv.URL+"/identity"+path, rd)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, resp.Header
}

func passwordAuth(user, password string, scope any) map[string]any {
	a := map[string]any{"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
		"user": map[string]any{"name": user, "domain": map[string]any{"name": "Default"}, "password": password}}}}
	if scope != nil {
		a["scope"] = scope
	}
	return map[string]any{"auth": a}
}

func projectScope(name string) map[string]any {
	return map[string]any{"project": map[string]any{"name": name, "domain": map[string]any{"id": "default"}}}
}

// token issues a token or fails the test.
func (e *env) token(user, password string, scope any) (string, map[string]any) {
	e.t.Helper()
	code, body, hdr := e.do("POST", "/v3/auth/tokens", "", passwordAuth(user, password, scope))
	if code != http.StatusCreated || hdr.Get("X-Subject-Token") == "" {
		e.t.Fatalf("token for %s: %d %v", user, code, body)
	}
	return hdr.Get("X-Subject-Token"), body["token"].(map[string]any)
}

func errCode(body map[string]any) float64 {
	if e, ok := body["error"].(map[string]any); ok {
		c, _ := e["code"].(float64)
		return c
	}
	return 0
}

func TestKeystoneFlow(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()

	if code, body, _ := e.do("GET", "/v3", "", nil); code != 200 || body["version"].(map[string]any)["id"] != "v3.14" {
		t.Fatalf("GET /v3: %d %v", code, body)
	}
	if code, body, _ := e.do("GET", "/", "", nil); code != 300 || body["versions"] == nil {
		t.Fatalf("GET /: %d %v", code, body)
	}

	admin, tok := e.token("admin", "secret", projectScope("admin"))
	if tok["project"].(map[string]any)["id"] != "admin" || len(tok["catalog"].([]any)) != 1 ||
		tok["roles"].([]any)[0].(map[string]any)["name"] != "admin" || tok["expires_at"] != "2026-01-01T01:00:00.000000Z" {
		t.Errorf("admin token body %v", tok)
	}
	// No scope: the default project.
	if _, tok := e.token("admin", "secret", nil); tok["project"] == nil {
		t.Errorf("admin's default project not used: %v", tok)
	}
	if _, tok := e.token("admin", "secret", "unscoped"); tok["project"] != nil {
		t.Errorf("unscoped token has a project: %v", tok)
	}

	// Bad input.
	for name, tc := range map[string]struct {
		body any
		code int
	}{
		"wrong password":  {passwordAuth("admin", "nope", nil), 401},
		"unknown user":    {passwordAuth("ghost", "secret", nil), 401},
		"unknown project": {passwordAuth("admin", "secret", projectScope("ghost")), 401},
		"malformed JSON":  {"{", 400},
		"no methods":      {map[string]any{"auth": map[string]any{}}, 400},
	} {
		code, body, _ := e.do("POST", "/v3/auth/tokens", "", tc.body)
		if code != tc.code || errCode(body) != float64(tc.code) {
			t.Errorf("%s: %d %v, want %d", name, code, body, tc.code)
		}
	}
	if code, body, _ := e.do("GET", "/v3/projects", "", nil); code != 401 || errCode(body) != 401 {
		t.Errorf("no token: %d %v", code, body)
	}

	// Admin creates a project, a user, a grant.
	if code, body, _ := e.do("POST", "/v3/projects", admin, map[string]any{"project": map[string]any{"name": "p1", "description": "d"}}); code != 201 || body["project"].(map[string]any)["id"] != "p1" {
		t.Fatalf("create project: %d %v", code, body)
	}
	if code, body, _ := e.do("POST", "/v3/projects", admin, map[string]any{"project": map[string]any{"name": "p1"}}); code != 409 || errCode(body) != 409 {
		t.Errorf("duplicate project: %d %v", code, body)
	}
	code, body, _ := e.do("POST", "/v3/users", admin, map[string]any{"user": map[string]any{"name": "u1", "password": "x", "email": "u1@example.com"}})
	if code != 201 {
		t.Fatalf("create user: %d %v", code, body)
	}
	if raw, _ := json.Marshal(body); bytes.Contains(raw, []byte("password\":\"")) || bytes.Contains(raw, []byte("$2a$")) {
		t.Errorf("user body shows a password: %s", raw)
	}
	u := &identityv1alpha1.User{}
	if err := e.c.Get(ctx, types.NamespacedName{Name: "u1"}, u); err != nil {
		t.Fatal(err)
	}
	if raw, _ := json.Marshal(u); bytes.Contains(raw, []byte("$2a$")) || bytes.Contains(raw, []byte(`"x"`)) {
		t.Errorf("User object holds the password: %s", raw)
	}
	if code, _, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/ghost", admin, nil); code != 404 {
		t.Errorf("grant of an unknown role: %d", code)
	}
	// Without a role u1 cannot scope to p1.
	if code, _, _ := e.do("POST", "/v3/auth/tokens", "", passwordAuth("u1", "x", projectScope("p1"))); code != 401 {
		t.Errorf("u1 scoped to p1 before the grant: %d", code)
	}
	if code, body, _ := e.do("PUT", "/v3/projects/p1/users/u1/roles/member", admin, nil); code != 204 {
		t.Fatalf("grant: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/projects/p1/users/u1/roles/member", admin, nil); code != 204 {
		t.Errorf("check grant: %d", code)
	}
	code, body, _ = e.do("GET", "/v3/role_assignments?user.id=u1&include_names", admin, nil)
	if ras := body["role_assignments"].([]any); code != 200 || len(ras) != 1 ||
		ras[0].(map[string]any)["scope"].(map[string]any)["project"].(map[string]any)["name"] != "p1" {
		t.Errorf("role assignments: %d %v", code, body)
	}

	// u1's token, scoped to p1.
	u1, tok := e.token("u1", "x", projectScope("p1"))
	if tok["roles"].([]any)[0].(map[string]any)["name"] != "member" {
		t.Errorf("u1 roles %v", tok["roles"])
	}
	id, err := e.k.Authenticate(ctx, u1)
	if err != nil || id.UserID != "u1" || id.ProjectName != "p1" || id.Namespace != "p1" || !slices.Equal(id.Roles, []string{"member"}) || !id.HasRole("reader") || id.HasRole("admin") {
		t.Errorf("Authenticate = %+v, %v", id, err)
	}
	if code, _, _ := e.do("POST", "/v3/projects", u1, map[string]any{"project": map[string]any{"name": "p2"}}); code != 403 {
		t.Errorf("member creates a project: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/auth/projects", u1, nil); code != 200 || len(body["projects"].([]any)) != 1 {
		t.Errorf("u1's projects: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/projects/admin", u1, nil); code != 403 {
		t.Errorf("u1 reads project admin: %d", code)
	}

	// Rescoping an unscoped token with the token method.
	un, _ := e.token("u1", "x", "unscoped")
	code, body, hdr := e.do("POST", "/v3/auth/tokens", "", map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"token"}, "token": map[string]any{"id": un}},
		"scope":    map[string]any{"project": map[string]any{"id": "p1"}}}})
	if code != 201 || body["token"].(map[string]any)["project"].(map[string]any)["id"] != "p1" {
		t.Errorf("rescope: %d %v", code, body)
	}
	rescoped := hdr.Get("X-Subject-Token")

	// Validate, revoke.
	if code, body, hdr := e.do("GET", "/v3/auth/tokens", u1, nil, "X-Subject-Token", u1); code != 200 || hdr.Get("X-Subject-Token") != u1 || body["token"] == nil {
		t.Errorf("validate: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/auth/tokens", u1, nil, "X-Subject-Token", admin); code != 403 {
		t.Errorf("u1 validates admin's token: %d", code)
	}
	if code, _, _ := e.do("HEAD", "/v3/auth/tokens", admin, nil, "X-Subject-Token", u1); code != 200 {
		t.Errorf("HEAD: %d", code)
	}
	if code, _, _ := e.do("DELETE", "/v3/auth/tokens", u1, nil, "X-Subject-Token", u1); code != 204 {
		t.Errorf("revoke: %d", code)
	}
	if _, err := e.k.Authenticate(ctx, u1); err == nil {
		t.Error("a revoked token authenticates")
	}
	if code, _, _ := e.do("GET", "/v3/auth/tokens", admin, nil, "X-Subject-Token", u1); code != 404 {
		t.Errorf("validate a revoked token: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/auth/projects", u1, nil); code != 401 || errCode(body) != 401 {
		t.Errorf("request with a revoked token: %d %v", code, body)
	}
	if _, err := e.k.Authenticate(ctx, rescoped); err != nil {
		t.Errorf("revoking one token revoked another: %v", err)
	}
	// The revocation is stored, not only cached.
	s := &corev1.Secret{}
	if err := e.c.Get(ctx, types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: revokedSecret}, s); err != nil || len(s.Data) != 1 {
		t.Errorf("revocation list %v, %v", s.Data, err)
	}

	// Expiry.
	e.clk.t = e.clk.t.Add(2 * time.Hour)
	if _, err := e.k.Authenticate(ctx, admin); err == nil {
		t.Error("an expired token authenticates")
	}
	if code, _, _ := e.do("GET", "/v3/roles", admin, nil); code != 401 {
		t.Errorf("request with an expired token: %d", code)
	}
	admin, _ = e.token("admin", "secret", projectScope("admin"))

	// Deleting the user ends its tokens and assignments.
	if code, _, _ := e.do("DELETE", "/v3/users/u1", admin, nil); code != 204 {
		t.Errorf("delete user: %d", code)
	}
	if _, err := e.k.Authenticate(ctx, rescoped); err == nil {
		t.Error("a deleted user's token authenticates")
	}
	if code, body, _ := e.do("GET", "/v3/role_assignments?user.id=u1", admin, nil); len(body["role_assignments"].([]any)) != 0 {
		t.Errorf("u1's assignments outlive it: %d %v", code, body)
	}
	if code, _, _ := e.do("GET", "/v3/users/u1", admin, nil); code != 404 {
		t.Errorf("deleted user: %d", code)
	}
	if code, _, _ := e.do("DELETE", "/v3/projects/p1", admin, nil); code != 204 {
		t.Errorf("delete project: %d", code)
	}
	if code, body, _ := e.do("GET", "/v3/nothing", admin, nil); code != 404 || errCode(body) != 404 {
		t.Errorf("unknown path: %d %v", code, body)
	}
}

func TestAuthenticatorMiddleware(t *testing.T) {
	e := newEnv(t)
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	var got auth.Identity
	h := auth.Middleware(e.k, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) },
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got, _ = auth.FromContext(r.Context()) }))
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-Auth-Token", admin)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || got.ProjectID != "admin" || !got.HasRole("admin") || got.DomainName != "Default" {
		t.Errorf("middleware: %d %+v", rec.Code, got)
	}
}

func TestBootstrapKeepsPassword(t *testing.T) {
	e := newEnv(t)
	if err := Bootstrap(context.Background(), e.c, "other"); !errors.Is(err, ErrAdminPasswordDiffers) {
		t.Errorf("Bootstrap with another password: %v", err)
	}
	e.token("admin", "secret", nil)
}

func TestKubernetesTokens(t *testing.T) {
	e := newEnv(t)
	admin, _ := e.token("admin", "secret", projectScope("admin"))
	resp, ok, err := e.k.AuthenticateToken(context.Background(), admin)
	if err != nil || !ok || resp.User.GetName() != "keystone:admin" ||
		!slices.Contains(resp.User.GetGroups(), "system:authenticated") || resp.User.GetExtra()[ExtraProject][0] != "admin" {
		t.Errorf("AuthenticateToken(admin's) = %+v, %v, %v", resp, ok, err)
	}
	for _, tok := range []string{"", "eyJhbGciOiJSUzI1NiJ9.e30.sig", "abcdef.0123456789abcdef"} {
		if _, ok, err := e.k.AuthenticateToken(context.Background(), tok); ok || err != nil {
			t.Errorf("AuthenticateToken(%q) = %v, %v; want not recognised", tok, ok, err)
		}
	}
}
