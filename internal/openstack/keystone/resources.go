package keystone

import (
	"context"
	"net/http"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// Domains: only "default" exists.

func (k *Keystone) listDomains(w http.ResponseWriter, r *http.Request) {
	out := []any{}
	if n := r.URL.Query().Get("name"); n == "" || n == identityv1alpha1.DefaultDomainName {
		out = append(out, domainBody(baseURL(r)))
	}
	writeJSON(w, http.StatusOK, map[string]any{"domains": out, "links": listLinks(r)})
}

func (k *Keystone) showDomain(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("id") != identityv1alpha1.DefaultDomain {
		writeError(w, http.StatusNotFound, "Could not find domain: "+r.PathValue("id")+".")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"domain": domainBody(baseURL(r))})
}

// checkDomain writes 400 unless id is empty or the default domain.
func checkDomain(w http.ResponseWriter, id string) bool {
	if id == "" || id == identityv1alpha1.DefaultDomain {
		return true
	}
	writeError(w, http.StatusBadRequest, "Only the default domain exists; domain_id "+id+" is not it.")
	return false
}

// Projects.

type projectRequest struct {
	Project *struct {
		Name        *string `json:"name"`
		Description *string `json:"description"`
		Enabled     *bool   `json:"enabled"`
		DomainID    string  `json:"domain_id"`
	} `json:"project"`
}

func (k *Keystone) listProjects(w http.ResponseWriter, r *http.Request) {
	me := caller(r)
	if !me.HasRole(identityv1alpha1.RoleAdmin) {
		// Keystone's default policy lets a non-admin list only its own.
		k.writeProjectsOf(w, r, me.UserID)
		return
	}
	list := &identityv1alpha1.ProjectList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "projects")
		return
	}
	q := r.URL.Query()
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		p := &list.Items[i]
		if n := q.Get("name"); n != "" && n != p.Name {
			continue
		}
		if d := q.Get("domain_id"); d != "" && d != identityv1alpha1.DefaultDomain {
			continue
		}
		if e := q.Get("enabled"); e != "" && (e == "true" || e == "True" || e == "1") != p.IsEnabled() {
			continue
		}
		out = append(out, projectBody(p, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"projects": out, "links": listLinks(r)})
}

func (k *Keystone) createProject(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req projectRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Project == nil || req.Project.Name == nil || *req.Project.Name == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find name in project.")
		return
	}
	if !checkDomain(w, req.Project.DomainID) {
		return
	}
	p := &identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: *req.Project.Name}}
	if req.Project.Description != nil {
		p.Spec.Description = *req.Project.Description
	}
	p.Spec.Enabled = req.Project.Enabled
	p.Spec.Domain = identityv1alpha1.DefaultDomain
	if err := k.c.Create(r.Context(), p); err != nil {
		writeAPIError(w, err, "project "+p.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"project": projectBody(p, baseURL(r))})
}

// getProject reads a project the caller may see: an admin any, others the
// one their token is scoped to; false means it wrote a 404/403.
func (k *Keystone) getProject(w http.ResponseWriter, r *http.Request, id string) (*identityv1alpha1.Project, bool) {
	me := caller(r)
	if !me.HasRole(identityv1alpha1.RoleAdmin) && me.ProjectID != id {
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
		return nil, false
	}
	p := &identityv1alpha1.Project{}
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: id}, p); err != nil {
		writeAPIError(w, err, "project: "+id)
		return nil, false
	}
	return p, true
}

func (k *Keystone) showProject(w http.ResponseWriter, r *http.Request) {
	if p, ok := k.getProject(w, r, r.PathValue("id")); ok {
		writeJSON(w, http.StatusOK, map[string]any{"project": projectBody(p, baseURL(r))})
	}
}

func (k *Keystone) updateProject(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req projectRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Project == nil {
		writeError(w, http.StatusBadRequest, "Expecting to find project in the request.")
		return
	}
	p, ok := k.getProject(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	if req.Project.Name != nil && *req.Project.Name != p.Name {
		writeError(w, http.StatusBadRequest, "A project's name is its namespace's and cannot change.")
		return
	}
	if req.Project.Description != nil {
		p.Spec.Description = *req.Project.Description
	}
	if req.Project.Enabled != nil {
		p.Spec.Enabled = req.Project.Enabled
	}
	if err := k.c.Update(r.Context(), p); err != nil {
		writeAPIError(w, err, "project "+p.Name)
		return
	}
	k.changed()
	writeJSON(w, http.StatusOK, map[string]any{"project": projectBody(p, baseURL(r))})
}

func (k *Keystone) deleteProject(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := k.c.Delete(r.Context(), &identityv1alpha1.Project{ObjectMeta: metav1.ObjectMeta{Name: id}},
		client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		writeAPIError(w, err, "project: "+id)
		return
	}
	// Its assignments go with it, as Keystone's do.
	k.deleteAssignments(r.Context(), func(ra *identityv1alpha1.RoleAssignment) bool { return ra.Spec.Project == id })
	// And its credentials: a project made again under the name must not
	// revive them.
	k.deleteProjectCredentials(r.Context(), id)
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

// deleteAssignments deletes the role assignments match selects (best
// effort: what fails stays, harmless without its user or project).
func (k *Keystone) deleteAssignments(ctx context.Context, match func(*identityv1alpha1.RoleAssignment) bool) {
	list := &identityv1alpha1.RoleAssignmentList{}
	if err := k.c.List(ctx, list); err != nil {
		return
	}
	for i := range list.Items {
		if match(&list.Items[i]) {
			_ = client.IgnoreNotFound(k.c.Delete(ctx, &list.Items[i]))
		}
	}
}

// Users.

type userRequest struct {
	User *struct {
		Name             *string `json:"name"`
		Password         *string `json:"password"`
		Enabled          *bool   `json:"enabled"`
		Email            *string `json:"email"`
		Description      *string `json:"description"`
		DefaultProjectID *string `json:"default_project_id"`
		DomainID         string  `json:"domain_id"`
	} `json:"user"`
}

func (k *Keystone) listUsers(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	list := &identityv1alpha1.UserList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "users")
		return
	}
	q := r.URL.Query()
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		u := &list.Items[i]
		if n := q.Get("name"); n != "" && n != u.Name {
			continue
		}
		if d := q.Get("domain_id"); d != "" && d != identityv1alpha1.DefaultDomain {
			continue
		}
		out = append(out, userBody(u, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "links": listLinks(r)})
}

func (k *Keystone) createUser(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req userRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.User == nil || req.User.Name == nil || *req.User.Name == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find name in user.")
		return
	}
	if !checkDomain(w, req.User.DomainID) {
		return
	}
	u := &identityv1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: *req.User.Name}}
	u.Spec.Domain = identityv1alpha1.DefaultDomain
	u.Spec.Enabled = req.User.Enabled
	applyUser(u, req)
	ctx := r.Context()
	if err := k.c.Create(ctx, u); err != nil {
		writeAPIError(w, err, "user "+u.Name)
		return
	}
	if req.User.Password != nil {
		if err := k.setPassword(ctx, u, *req.User.Password); err != nil {
			// A user without its password is no use: take it back.
			_ = k.c.Delete(ctx, u)
			writeAPIError(w, err, "the password of user "+u.Name)
			return
		}
	}
	writeJSON(w, http.StatusCreated, map[string]any{"user": userBody(u, baseURL(r))})
}

func applyUser(u *identityv1alpha1.User, req userRequest) {
	if v := req.User.Email; v != nil {
		u.Spec.Email = *v
	}
	if v := req.User.Description; v != nil {
		u.Spec.Description = *v
	}
	if v := req.User.DefaultProjectID; v != nil {
		u.Spec.DefaultProject = *v
	}
}

// getUser reads a user the caller may see: an admin any, others
// themselves.
func (k *Keystone) getUser(w http.ResponseWriter, r *http.Request, id string) (*identityv1alpha1.User, bool) {
	me := caller(r)
	if !me.HasRole(identityv1alpha1.RoleAdmin) && me.UserID != id {
		writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
		return nil, false
	}
	u := &identityv1alpha1.User{}
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: id}, u); err != nil {
		writeAPIError(w, err, "user: "+id)
		return nil, false
	}
	return u, true
}

func (k *Keystone) showUser(w http.ResponseWriter, r *http.Request) {
	if u, ok := k.getUser(w, r, r.PathValue("id")); ok {
		writeJSON(w, http.StatusOK, map[string]any{"user": userBody(u, baseURL(r))})
	}
}

func (k *Keystone) updateUser(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req userRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.User == nil {
		writeError(w, http.StatusBadRequest, "Expecting to find user in the request.")
		return
	}
	u, ok := k.getUser(w, r, r.PathValue("id"))
	if !ok {
		return
	}
	if req.User.Name != nil && *req.User.Name != u.Name {
		writeError(w, http.StatusBadRequest, "A user's name is its id and cannot change.")
		return
	}
	applyUser(u, req)
	if req.User.Enabled != nil {
		u.Spec.Enabled = req.User.Enabled
	}
	ctx := r.Context()
	if err := k.c.Update(ctx, u); err != nil {
		writeAPIError(w, err, "user "+u.Name)
		return
	}
	k.changed()
	if req.User.Password != nil {
		if err := k.setPassword(ctx, u, *req.User.Password); err != nil {
			writeAPIError(w, err, "the password of user "+u.Name)
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"user": userBody(u, baseURL(r))})
}

func (k *Keystone) deleteUser(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	// Its password Secret goes with it (owner reference).
	if err := k.c.Delete(r.Context(), &identityv1alpha1.User{ObjectMeta: metav1.ObjectMeta{Name: id}},
		client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil {
		writeAPIError(w, err, "user: "+id)
		return
	}
	k.deleteAssignments(r.Context(), func(ra *identityv1alpha1.RoleAssignment) bool { return ra.Spec.User == id })
	k.removeFromGroups(r.Context(), id)
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) userProjects(w http.ResponseWriter, r *http.Request) {
	if _, ok := k.getUser(w, r, r.PathValue("id")); ok {
		k.writeProjectsOf(w, r, r.PathValue("id"))
	}
}

// Roles.

func (k *Keystone) listRoles(w http.ResponseWriter, r *http.Request) {
	list := &identityv1alpha1.RoleList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "roles")
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		if n := r.URL.Query().Get("name"); n != "" && n != list.Items[i].Name {
			continue
		}
		out = append(out, roleBody(&list.Items[i], base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out, "links": listLinks(r)})
}

func (k *Keystone) showRole(w http.ResponseWriter, r *http.Request) {
	role := &identityv1alpha1.Role{}
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: r.PathValue("id")}, role); err != nil {
		writeAPIError(w, err, "role: "+r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"role": roleBody(role, baseURL(r))})
}

func (k *Keystone) createRole(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req struct {
		Role *struct {
			Name        string `json:"name"`
			Description string `json:"description"`
		} `json:"role"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Role == nil || req.Role.Name == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find name in role.")
		return
	}
	role := &identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: req.Role.Name}, Spec: identityv1alpha1.RoleSpec{Description: req.Role.Description}}
	if err := k.c.Create(r.Context(), role); err != nil {
		writeAPIError(w, err, "role "+role.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"role": roleBody(role, baseURL(r))})
}

func (k *Keystone) deleteRole(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := k.c.Delete(r.Context(), &identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: id}}); err != nil {
		writeAPIError(w, err, "role: "+id)
		return
	}
	k.deleteAssignments(r.Context(), func(ra *identityv1alpha1.RoleAssignment) bool { return ra.Spec.Role == id })
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

// Grants: /v3/projects/{p}/users/{u}/roles/{r}.

// grantParts checks that a grant's project, user and role exist.
func (k *Keystone) grantParts(w http.ResponseWriter, r *http.Request, withRole bool) bool {
	ctx := r.Context()
	checks := []struct {
		obj  client.Object
		id   string
		what string
	}{
		{&identityv1alpha1.Project{}, r.PathValue("p"), "project"},
		{&identityv1alpha1.User{}, r.PathValue("u"), "user"},
	}
	if withRole {
		checks = append(checks, struct {
			obj  client.Object
			id   string
			what string
		}{&identityv1alpha1.Role{}, r.PathValue("r"), "role"})
	}
	for _, c := range checks {
		if err := k.c.Get(ctx, types.NamespacedName{Name: c.id}, c.obj); err != nil {
			writeAPIError(w, err, c.what+": "+c.id)
			return false
		}
	}
	return true
}

func (k *Keystone) grant(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) || !k.grantParts(w, r, true) {
		return
	}
	p, u, role := r.PathValue("p"), r.PathValue("u"), r.PathValue("r")
	ra := &identityv1alpha1.RoleAssignment{
		ObjectMeta: metav1.ObjectMeta{Name: assignmentName(u, p, role)},
		Spec:       identityv1alpha1.RoleAssignmentSpec{User: u, Project: p, Role: role},
	}
	if err := k.c.Create(r.Context(), ra); err != nil && !apierrors.IsAlreadyExists(err) {
		writeAPIError(w, err, "the role assignment")
		return
	}
	k.changed() // cached roles (EC2 credentials') widen at once too
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) checkGrant(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	ra := &identityv1alpha1.RoleAssignment{}
	name := assignmentName(r.PathValue("u"), r.PathValue("p"), r.PathValue("r"))
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: name}, ra); err != nil {
		writeAPIError(w, err, "the role assignment")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) revokeGrant(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	name := assignmentName(r.PathValue("u"), r.PathValue("p"), r.PathValue("r"))
	if err := k.c.Delete(r.Context(), &identityv1alpha1.RoleAssignment{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		writeAPIError(w, err, "the role assignment")
		return
	}
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) listGrants(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) || !k.grantParts(w, r, false) {
		return
	}
	roles, err := k.rolesOn(r.Context(), r.PathValue("u"), nil, r.PathValue("p"))
	if err != nil {
		writeAPIError(w, err, "role assignments")
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for _, name := range roles {
		out = append(out, roleBody(&identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}}, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out, "links": listLinks(r)})
}

// listAssignments is GET /v3/role_assignments; a non-admin sees its own.
func (k *Keystone) listAssignments(w http.ResponseWriter, r *http.Request) {
	me := caller(r)
	q := r.URL.Query()
	user := q.Get("user.id")
	if !me.HasRole(identityv1alpha1.RoleAdmin) {
		if user != "" && user != me.UserID {
			writeError(w, http.StatusForbidden, "You are not authorized to perform the requested action.")
			return
		}
		user = me.UserID
	}
	list := &identityv1alpha1.RoleAssignmentList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "role assignments")
		return
	}
	if _, effective := q["effective"]; effective {
		if err := k.expandGroups(r.Context(), list); err != nil {
			writeAPIError(w, err, "groups")
			return
		}
	}
	_, names := q["include_names"]
	if v := q.Get("include_names"); v == "0" || v == "false" || v == "False" {
		names = false
	}
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		ra := &list.Items[i]
		if !matchAssignment(ra, user, q.Get("group.id"), q.Get("scope.project.id"), q.Get("role.id")) {
			continue
		}
		body := assignmentBody(ra, base, names)
		if via := ra.Annotations[viaGroup]; via != "" {
			links := body["links"].(map[string]any)
			links["assignment"] = base + "/v3/projects/" + ra.Spec.Project + "/groups/" + via + "/roles/" + ra.Spec.Role
			links["membership"] = base + "/v3/groups/" + via + "/users/" + ra.Spec.User
		}
		out = append(out, body)
	}
	slices.SortFunc(out, func(a, b map[string]any) int {
		return strings.Compare(a["links"].(map[string]any)["assignment"].(string), b["links"].(map[string]any)["assignment"].(string))
	})
	writeJSON(w, http.StatusOK, map[string]any{"role_assignments": out, "links": listLinks(r)})
}

// matchAssignment applies /v3/role_assignments' filters (empty: any).
func matchAssignment(ra *identityv1alpha1.RoleAssignment, user, group, project, role string) bool {
	return (user == "" || ra.Spec.User == user) && (group == "" || ra.Spec.Group == group) &&
		(project == "" || ra.Spec.Project == project) && (role == "" || ra.Spec.Role == role)
}

// viaGroup marks an assignment expandGroups derived from a group's.
const viaGroup = "keystone/via-group"

// expandGroups replaces each group assignment by one per member (what
// ?effective lists), noting the group.
func (k *Keystone) expandGroups(ctx context.Context, list *identityv1alpha1.RoleAssignmentList) error {
	groups := &identityv1alpha1.GroupList{}
	if err := k.c.List(ctx, groups); err != nil {
		return err
	}
	members := map[string][]string{}
	for _, g := range groups.Items {
		members[g.Name] = g.Spec.Users
	}
	var out []identityv1alpha1.RoleAssignment
	for _, ra := range list.Items {
		if ra.Spec.Group == "" {
			out = append(out, ra)
			continue
		}
		for _, u := range members[ra.Spec.Group] {
			e := ra.DeepCopy()
			e.Spec.User, e.Spec.Group = u, ""
			e.Annotations = map[string]string{viaGroup: ra.Spec.Group}
			out = append(out, *e)
		}
	}
	list.Items = out
	return nil
}

// deleteProjectCredentials deletes the application and EC2 credentials of
// project (best effort; their Secrets go with them).
func (k *Keystone) deleteProjectCredentials(ctx context.Context, project string) {
	acs := &identityv1alpha1.ApplicationCredentialList{}
	if k.c.List(ctx, acs) == nil {
		for i := range acs.Items {
			if acs.Items[i].Spec.Project == project {
				_ = client.IgnoreNotFound(k.c.Delete(ctx, &acs.Items[i], client.PropagationPolicy(metav1.DeletePropagationBackground)))
			}
		}
	}
	ec2s := &identityv1alpha1.EC2CredentialList{}
	if k.c.List(ctx, ec2s) == nil {
		for i := range ec2s.Items {
			if ec2s.Items[i].Spec.Project == project {
				_ = client.IgnoreNotFound(k.c.Delete(ctx, &ec2s.Items[i], client.PropagationPolicy(metav1.DeletePropagationBackground)))
			}
		}
	}
}
