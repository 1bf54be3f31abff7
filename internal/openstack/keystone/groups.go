package keystone

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// groupAssignmentName is the RoleAssignment object of a group's grant.
func groupAssignmentName(group, project, role string) string {
	sum := sha256.Sum256([]byte("group\x00" + group + "\x00" + project + "\x00" + role))
	return "g-" + hex.EncodeToString(sum[:10])
}

// groupBody is a Group as Keystone shows it; its id is its name.
func groupBody(g *identityv1alpha1.Group, base string) map[string]any {
	return map[string]any{
		"id": g.Name, "name": g.Name, "description": g.Spec.Description,
		"domain_id": identityv1alpha1.DefaultDomain,
		"links":     map[string]any{"self": base + "/v3/groups/" + g.Name},
	}
}

type groupRequest struct {
	Group *struct {
		Name        *string `json:"name"`
		Description *string `json:"description"`
		DomainID    string  `json:"domain_id"`
	} `json:"group"`
}

func (k *Keystone) listGroups(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	list := &identityv1alpha1.GroupList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "groups")
		return
	}
	q := r.URL.Query()
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		g := &list.Items[i]
		if n := q.Get("name"); n != "" && n != g.Name {
			continue
		}
		if d := q.Get("domain_id"); d != "" && d != identityv1alpha1.DefaultDomain {
			continue
		}
		out = append(out, groupBody(g, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out, "links": listLinks(r)})
}

func (k *Keystone) createGroup(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req groupRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Group == nil || req.Group.Name == nil || *req.Group.Name == "" {
		writeError(w, http.StatusBadRequest, "Expecting to find name in group.")
		return
	}
	if !checkDomain(w, req.Group.DomainID) {
		return
	}
	g := &identityv1alpha1.Group{ObjectMeta: metav1.ObjectMeta{Name: *req.Group.Name}}
	g.Spec.Domain = identityv1alpha1.DefaultDomain
	if req.Group.Description != nil {
		g.Spec.Description = *req.Group.Description
	}
	if err := k.c.Create(r.Context(), g); err != nil {
		writeAPIError(w, err, "group "+g.Name)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"group": groupBody(g, baseURL(r))})
}

func (k *Keystone) getGroup(w http.ResponseWriter, r *http.Request, id string) (*identityv1alpha1.Group, bool) {
	g := &identityv1alpha1.Group{}
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: id}, g); err != nil {
		writeAPIError(w, err, "group: "+id)
		return nil, false
	}
	return g, true
}

func (k *Keystone) showGroup(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	if g, ok := k.getGroup(w, r, r.PathValue("g")); ok {
		writeJSON(w, http.StatusOK, map[string]any{"group": groupBody(g, baseURL(r))})
	}
}

func (k *Keystone) updateGroup(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	var req groupRequest
	if !readJSON(w, r, &req) {
		return
	}
	if req.Group == nil {
		writeError(w, http.StatusBadRequest, "Expecting to find group in the request.")
		return
	}
	g, ok := k.getGroup(w, r, r.PathValue("g"))
	if !ok {
		return
	}
	if req.Group.Name != nil && *req.Group.Name != g.Name {
		writeError(w, http.StatusBadRequest, "A group's name is its id and cannot change.")
		return
	}
	if req.Group.Description != nil {
		g.Spec.Description = *req.Group.Description
	}
	if err := k.c.Update(r.Context(), g); err != nil {
		writeAPIError(w, err, "group "+g.Name)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"group": groupBody(g, baseURL(r))})
}

func (k *Keystone) deleteGroup(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	id := r.PathValue("g")
	if err := k.c.Delete(r.Context(), &identityv1alpha1.Group{ObjectMeta: metav1.ObjectMeta{Name: id}}); err != nil {
		writeAPIError(w, err, "group: "+id)
		return
	}
	k.deleteAssignments(r.Context(), func(ra *identityv1alpha1.RoleAssignment) bool { return ra.Spec.Group == id })
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

// Membership: /v3/groups/{g}/users[/{u}], /v3/users/{u}/groups.

func (k *Keystone) groupUsers(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	g, ok := k.getGroup(w, r, r.PathValue("g"))
	if !ok {
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for _, name := range g.Spec.Users {
		u := &identityv1alpha1.User{}
		if err := k.c.Get(r.Context(), types.NamespacedName{Name: name}, u); err != nil {
			continue // a member deleted meanwhile
		}
		out = append(out, userBody(u, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": out, "links": listLinks(r)})
}

// setMember adds (in) or removes user from group, retrying on conflicts.
func (k *Keystone) setMember(ctx context.Context, group, user string, in bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		g := &identityv1alpha1.Group{}
		if err := k.c.Get(ctx, types.NamespacedName{Name: group}, g); err != nil {
			return err
		}
		if g.HasMember(user) == in {
			return nil
		}
		if in {
			g.Spec.Users = append(g.Spec.Users, user)
			slices.Sort(g.Spec.Users)
		} else {
			g.Spec.Users = slices.DeleteFunc(g.Spec.Users, func(u string) bool { return u == user })
		}
		return k.c.Update(ctx, g)
	})
}

func (k *Keystone) addMember(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	g, u := r.PathValue("g"), r.PathValue("u")
	if _, ok := k.getGroup(w, r, g); !ok {
		return
	}
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: u}, &identityv1alpha1.User{}); err != nil {
		writeAPIError(w, err, "user: "+u)
		return
	}
	if err := k.setMember(r.Context(), g, u, true); err != nil {
		writeAPIError(w, err, "group "+g)
		return
	}
	k.changed() // a token's Kubernetes groups are cached too
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) checkMember(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	g, ok := k.getGroup(w, r, r.PathValue("g"))
	if !ok {
		return
	}
	if !g.HasMember(r.PathValue("u")) {
		writeError(w, http.StatusNotFound, "User "+r.PathValue("u")+" is not a member of group "+g.Name+".")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) removeMember(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	g, ok := k.getGroup(w, r, r.PathValue("g"))
	if !ok {
		return
	}
	u := r.PathValue("u")
	if !g.HasMember(u) {
		writeError(w, http.StatusNotFound, "User "+u+" is not a member of group "+g.Name+".")
		return
	}
	if err := k.setMember(r.Context(), g.Name, u, false); err != nil {
		writeAPIError(w, err, "group "+g.Name)
		return
	}
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) userGroups(w http.ResponseWriter, r *http.Request) {
	if _, ok := k.getUser(w, r, r.PathValue("id")); !ok {
		return
	}
	list := &identityv1alpha1.GroupList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "groups")
		return
	}
	base := baseURL(r)
	out := []map[string]any{}
	for i := range list.Items {
		if list.Items[i].HasMember(r.PathValue("id")) {
			out = append(out, groupBody(&list.Items[i], base))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"groups": out, "links": listLinks(r)})
}

// removeFromGroups drops a deleted user from every group (best effort).
func (k *Keystone) removeFromGroups(ctx context.Context, user string) {
	list := &identityv1alpha1.GroupList{}
	if err := k.c.List(ctx, list); err != nil {
		return
	}
	for i := range list.Items {
		if list.Items[i].HasMember(user) {
			_ = k.setMember(ctx, list.Items[i].Name, user, false)
		}
	}
}

// Group grants: /v3/projects/{p}/groups/{g}/roles[/{r}].

func (k *Keystone) groupGrantParts(w http.ResponseWriter, r *http.Request, withRole bool) bool {
	ctx := r.Context()
	if err := k.c.Get(ctx, types.NamespacedName{Name: r.PathValue("p")}, &identityv1alpha1.Project{}); err != nil {
		writeAPIError(w, err, "project: "+r.PathValue("p"))
		return false
	}
	if err := k.c.Get(ctx, types.NamespacedName{Name: r.PathValue("g")}, &identityv1alpha1.Group{}); err != nil {
		writeAPIError(w, err, "group: "+r.PathValue("g"))
		return false
	}
	if withRole {
		if err := k.c.Get(ctx, types.NamespacedName{Name: r.PathValue("r")}, &identityv1alpha1.Role{}); err != nil {
			writeAPIError(w, err, "role: "+r.PathValue("r"))
			return false
		}
	}
	return true
}

func (k *Keystone) grantGroup(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) || !k.groupGrantParts(w, r, true) {
		return
	}
	p, g, role := r.PathValue("p"), r.PathValue("g"), r.PathValue("r")
	ra := &identityv1alpha1.RoleAssignment{
		ObjectMeta: metav1.ObjectMeta{Name: groupAssignmentName(g, p, role)},
		Spec:       identityv1alpha1.RoleAssignmentSpec{Group: g, Project: p, Role: role},
	}
	if err := k.c.Create(r.Context(), ra); err != nil && !apierrors.IsAlreadyExists(err) {
		writeAPIError(w, err, "the role assignment")
		return
	}
	k.changed() // cached roles (EC2 credentials') widen at once too
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) checkGroupGrant(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	name := groupAssignmentName(r.PathValue("g"), r.PathValue("p"), r.PathValue("r"))
	if err := k.c.Get(r.Context(), types.NamespacedName{Name: name}, &identityv1alpha1.RoleAssignment{}); err != nil {
		writeAPIError(w, err, "the role assignment")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) revokeGroupGrant(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) {
		return
	}
	name := groupAssignmentName(r.PathValue("g"), r.PathValue("p"), r.PathValue("r"))
	if err := k.c.Delete(r.Context(), &identityv1alpha1.RoleAssignment{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		writeAPIError(w, err, "the role assignment")
		return
	}
	k.changed()
	w.WriteHeader(http.StatusNoContent)
}

func (k *Keystone) listGroupGrants(w http.ResponseWriter, r *http.Request) {
	if !requireAdmin(w, r) || !k.groupGrantParts(w, r, false) {
		return
	}
	list := &identityv1alpha1.RoleAssignmentList{}
	if err := k.c.List(r.Context(), list); err != nil {
		writeAPIError(w, err, "role assignments")
		return
	}
	var roles []string
	for _, ra := range list.Items {
		if ra.Spec.Group == r.PathValue("g") && ra.Spec.Project == r.PathValue("p") && !slices.Contains(roles, ra.Spec.Role) {
			roles = append(roles, ra.Spec.Role)
		}
	}
	slices.Sort(roles)
	base := baseURL(r)
	out := []map[string]any{}
	for _, name := range roles {
		out = append(out, roleBody(&identityv1alpha1.Role{ObjectMeta: metav1.ObjectMeta{Name: name}}, base))
	}
	writeJSON(w, http.StatusOK, map[string]any{"roles": out, "links": listLinks(r)})
}
