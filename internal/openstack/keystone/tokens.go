package keystone

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// baseURL is the API's own URL (scheme, host and the prefix it is mounted
// under), for links.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	full, _, _ := strings.Cut(r.RequestURI, "?")
	prefix := strings.TrimSuffix(full, r.URL.Path)
	if !strings.HasSuffix(full, r.URL.Path) {
		prefix = ""
	}
	return scheme + "://" + r.Host + strings.TrimSuffix(prefix, "/")
}

func versionBody(base string) map[string]any {
	return map[string]any{
		"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
		"links":       []map[string]any{{"rel": "self", "href": base + "/v3/"}},
		"media-types": []map[string]any{{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}},
	}
}

// versions is the unversioned endpoint's version list.
func (k *Keystone) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": map[string]any{"values": []any{versionBody(baseURL(r))}}})
}

func (k *Keystone) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"version": versionBody(baseURL(r))})
}

// Request bodies of POST /v3/auth/tokens.
type (
	nameOrID struct {
		ID     string    `json:"id"`
		Name   string    `json:"name"`
		Domain *nameOrID `json:"domain"`
	}
	passwordUser struct {
		nameOrID
		Password string `json:"password"`
	}
	authRequest struct {
		Auth *struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password *struct {
					User passwordUser `json:"user"`
				} `json:"password"`
				Token *struct {
					ID string `json:"id"`
				} `json:"token"`
				ApplicationCredential *appCredAuth `json:"application_credential"`
			} `json:"identity"`
			Scope json.RawMessage `json:"scope"`
		} `json:"auth"`
	}
	scopeRequest struct {
		Project *nameOrID `json:"project"`
		Domain  *nameOrID `json:"domain"`
		System  any       `json:"system"`
	}
)

// isDefaultDomain reports whether ref names the one domain (absent counts).
func isDefaultDomain(ref *nameOrID) bool {
	return ref == nil || ref.ID == identityv1alpha1.DefaultDomain ||
		(ref.ID == "" && strings.EqualFold(ref.Name, identityv1alpha1.DefaultDomainName))
}

// resolve turns an id or a name in the default domain into an object name;
// "" when it names nothing that can exist.
func resolve(ref nameOrID, needDomain bool) string {
	if ref.ID != "" {
		return ref.ID
	}
	if ref.Name == "" || (needDomain && ref.Domain == nil) || !isDefaultDomain(ref.Domain) {
		return ""
	}
	return ref.Name
}

// authError is a 401 (or 400) with its message.
type authError struct {
	code int
	msg  string
}

func (e authError) Error() string { return e.msg }

func unauthorized(msg string) error { return authError{http.StatusUnauthorized, msg} }

// issueToken is POST /v3/auth/tokens.
func (k *Keystone) issueToken(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if !readJSON(w, r, &req) {
		return
	}
	c, u, p, roles, ac, err := k.authenticate(r.Context(), req)
	var ae authError
	switch {
	case errors.As(err, &ae):
		writeError(w, ae.code, ae.msg)
		return
	case err != nil:
		writeAPIError(w, err, "the user")
		return
	}
	token, err := k.signer.sign(c)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot sign the token")
		return
	}
	w.Header().Set("X-Subject-Token", token)
	body := tokenBody(c, u, p, roles, k.catalogFor(r, projectName(p)))
	if ac != nil {
		body["application_credential"] = appCredRef(ac)
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": body})
}

func (k *Keystone) catalogFor(r *http.Request, projectID string) []map[string]any {
	if _, no := r.URL.Query()["nocatalog"]; no {
		return nil
	}
	return catalogBody(k.catalog, k.region, projectID)
}

// projectName is a project's ID (its name), "" for none.
func projectName(p *identityv1alpha1.Project) string {
	if p == nil {
		return ""
	}
	return p.Name
}

// authenticate checks a token request's identity and scope.
func (k *Keystone) authenticate(ctx context.Context, req authRequest) (claims, *identityv1alpha1.User, *identityv1alpha1.Project, []string, *identityv1alpha1.ApplicationCredential, error) {
	fail := func(err error) (claims, *identityv1alpha1.User, *identityv1alpha1.Project, []string, *identityv1alpha1.ApplicationCredential, error) {
		return claims{}, nil, nil, nil, nil, err
	}
	var ac *identityv1alpha1.ApplicationCredential
	if req.Auth == nil || len(req.Auth.Identity.Methods) == 0 {
		return fail(authError{http.StatusBadRequest, "Expecting to find auth.identity.methods in the request."})
	}
	now := k.now()
	c := claims{ID: randomID(), IssuedAt: now.Unix(), Expires: now.Add(k.ttl).Unix()}
	var userName string
	for _, m := range req.Auth.Identity.Methods {
		switch m {
		case "password":
			pw := req.Auth.Identity.Password
			if pw == nil {
				return fail(authError{http.StatusBadRequest, "Expecting to find auth.identity.password in the request."})
			}
			name := resolve(pw.User.nameOrID, true)
			if name == "" || (userName != "" && name != userName) {
				return fail(unauthorized("The request you have made requires authentication."))
			}
			ok, err := k.checkPassword(ctx, name, pw.User.Password)
			if err != nil {
				return fail(err)
			}
			if !ok {
				return fail(unauthorized("The request you have made requires authentication."))
			}
			userName = name
		case "token":
			t := req.Auth.Identity.Token
			if t == nil {
				return fail(authError{http.StatusBadRequest, "Expecting to find auth.identity.token in the request."})
			}
			s, err := k.validate(ctx, t.ID)
			if err != nil {
				if errors.Is(err, auth.ErrUnauthorized) {
					return fail(unauthorized("The request you have made requires authentication."))
				}
				return fail(err)
			}
			old := s.c
			if old.AppCred != "" {
				// Its roles are the credential's: no rescoping around them.
				return fail(unauthorized("A token of an application credential cannot be rescoped."))
			}
			if userName != "" && old.User != userName {
				return fail(unauthorized("The request you have made requires authentication."))
			}
			userName = old.User
			// A rescoped token lives no longer than the one it came from.
			c.Expires = min(c.Expires, old.Expires)
		case "application_credential":
			if req.Auth.Identity.ApplicationCredential == nil {
				return fail(authError{http.StatusBadRequest, "Expecting to find auth.identity.application_credential in the request."})
			}
			found, err := k.checkAppCred(ctx, *req.Auth.Identity.ApplicationCredential)
			if err != nil {
				return fail(err)
			}
			if userName != "" && found.Spec.User != userName {
				return fail(unauthorized("The request you have made requires authentication."))
			}
			ac, userName = found, found.Spec.User
			c.AppCred = ac.Name
			if ac.Spec.ExpiresAt != nil {
				c.Expires = min(c.Expires, ac.Spec.ExpiresAt.Unix())
			}
		default:
			return fail(unauthorized("Attempted to authenticate with an unsupported method: " + m))
		}
		if !slices.Contains(c.Methods, m) {
			c.Methods = append(c.Methods, m)
		}
	}
	u := &identityv1alpha1.User{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: userName}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return fail(unauthorized("The request you have made requires authentication."))
		}
		return fail(err)
	}
	if !u.IsEnabled() {
		return fail(unauthorized("The account is disabled for user: " + u.Name))
	}
	c.User, c.UserUID = u.Name, string(u.UID)
	if ac != nil && !ownedBy(ac, u) {
		return fail(unauthorized("The request you have made requires authentication."))
	}

	project, explicit, err := k.requestedProject(req.Auth.Scope, u)
	if err != nil {
		return fail(err)
	}
	if ac != nil {
		// Always the credential's project; a scope may only repeat it.
		if explicit && project != ac.Spec.Project {
			return fail(unauthorized("An application credential's token is scoped to its project only."))
		}
		project, explicit = ac.Spec.Project, true
	}
	if project == "" {
		return c, u, nil, nil, nil, nil
	}
	p := &identityv1alpha1.Project{}
	if err := k.c.Get(ctx, types.NamespacedName{Name: project}, p); err != nil {
		if apierrors.IsNotFound(err) && !explicit {
			return c, u, nil, nil, nil, nil // a vanished default project: unscoped
		}
		if apierrors.IsNotFound(err) {
			return fail(unauthorized("Could not find project: " + project))
		}
		return fail(err)
	}
	roles, err := k.effectiveRoles(ctx, u.Name, p.Name)
	if err != nil {
		return fail(err)
	}
	if ac != nil {
		if roles, err = appCredRoles(ac, roles); err != nil {
			return fail(unauthorized("The application credential's user no longer holds all of its roles."))
		}
	}
	if len(roles) == 0 || !p.IsEnabled() {
		if !explicit {
			return c, u, nil, nil, nil, nil
		}
		return fail(unauthorized("User " + u.Name + " has no access to project " + p.Name))
	}
	c.Project = p.Name
	return c, u, p, roles, ac, nil
}

// requestedProject is the project a token request scopes to: the explicit
// one, none for "unscoped", else the user's default project.
func (k *Keystone) requestedProject(raw json.RawMessage, u *identityv1alpha1.User) (string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return u.Spec.DefaultProject, false, nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s == "unscoped" {
			return "", false, nil
		}
		return "", false, authError{http.StatusBadRequest, "Invalid scope: " + s}
	}
	var scope scopeRequest
	if err := json.Unmarshal(raw, &scope); err != nil {
		return "", false, authError{http.StatusBadRequest, "Malformed scope: " + err.Error()}
	}
	switch {
	case scope.Project != nil:
		name := resolve(*scope.Project, true)
		if name == "" {
			return "", false, unauthorized("Could not find the project of the scope.")
		}
		return name, true, nil
	case scope.Domain != nil, scope.System != nil:
		return "", false, unauthorized("Only project-scoped and unscoped tokens are supported.")
	}
	return "", false, authError{http.StatusBadRequest, "Expecting a project in auth.scope."}
}

// subject validates X-Subject-Token for the caller: its own token, or any
// token for an admin; false means it wrote the error.
func (k *Keystone) subject(w http.ResponseWriter, r *http.Request) (session, bool) {
	token := r.Header.Get("X-Subject-Token")
	s, err := k.validate(r.Context(), token)
	if err != nil {
		if errors.Is(err, auth.ErrUnauthorized) {
			writeError(w, http.StatusNotFound, "Could not find token.")
		} else {
			writeAPIError(w, err, "the token")
		}
		return session{}, false
	}
	me := caller(r)
	if me.UserID != s.id.UserID && !me.HasRole(identityv1alpha1.RoleAdmin) {
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
		return session{}, false
	}
	w.Header().Set("X-Subject-Token", token)
	return s, true
}

// showToken is GET (and HEAD) /v3/auth/tokens.
func (k *Keystone) showToken(w http.ResponseWriter, r *http.Request) {
	s, ok := k.subject(w, r)
	if !ok {
		return
	}
	id := s.id
	u := &identityv1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: id.UserID}}
	var p *identityv1alpha1.Project
	if id.ProjectID != "" {
		p = &identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: id.ProjectID}}
	}
	body := tokenBody(s.c, u, p, id.Roles, k.catalogFor(r, id.ProjectID))
	if s.appCred != nil {
		body["application_credential"] = appCredRef(s.appCred)
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": body})
}

// revokeToken is DELETE /v3/auth/tokens.
func (k *Keystone) revokeToken(w http.ResponseWriter, r *http.Request) {
	s, ok := k.subject(w, r)
	if !ok {
		return
	}
	c := s.c
	if err := k.revoked.revoke(r.Context(), c.ID, c.expiresAt()); err != nil {
		writeAPIError(w, err, "the token")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// authProjects is GET /v3/auth/projects: the projects the caller holds a
// role on.
func (k *Keystone) authProjects(w http.ResponseWriter, r *http.Request) {
	k.writeProjectsOf(w, r, caller(r).UserID)
}

func (k *Keystone) writeProjectsOf(w http.ResponseWriter, r *http.Request, user string) {
	ctx := r.Context()
	groups, err := k.groupsOf(ctx, user)
	if err != nil {
		writeAPIError(w, err, "groups")
		return
	}
	ras := &identityv1alpha1.RoleAssignmentList{}
	if err := k.c.List(ctx, ras); err != nil {
		writeAPIError(w, err, "role assignments")
		return
	}
	mine := map[string]bool{}
	for _, ra := range ras.Items {
		if (ra.Spec.User != "" && ra.Spec.User == user) || (ra.Spec.Group != "" && slices.Contains(groups, ra.Spec.Group)) {
			mine[ra.Spec.Project] = true
		}
	}
	list := &identityv1alpha1.ProjectList{}
	if err := k.c.List(ctx, list); err != nil {
		writeAPIError(w, err, "projects")
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		if mine[list.Items[i].Name] {
			out = append(out, projectBody(&list.Items[i], base))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out, "links": listLinks(r)})
}

// authCatalog is GET /v3/auth/catalog.
func (k *Keystone) authCatalog(w http.ResponseWriter, r *http.Request) {
	id, _ := auth.FromContext(r.Context())
	writeJSON(w, http.StatusOK, map[string]any{"catalog": catalogBody(k.catalog, k.region, id.ProjectID), "links": listLinks(r)})
}

func listLinks(r *http.Request) map[string]any {
	return map[string]any{"self": baseURL(r) + r.URL.RequestURI(), "previous": nil, "next": nil}
}
