package keystone

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// timeFormat is Keystone's timestamp format.
const timeFormat = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func hashPassword(password string) ([]byte, error) {
	return bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
}

func passwordMatches(hash []byte, password string) bool {
	return len(hash) > 0 && bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// domainRef is the one domain as bodies name it.
func domainRef() map[string]any {
	return map[string]any{"id": identityv1alpha1.DefaultDomain, "name": identityv1alpha1.DefaultDomainName}
}

// domainBody is the default domain.
func domainBody(base string) map[string]any {
	return map[string]any{
		"id": identityv1alpha1.DefaultDomain, "name": identityv1alpha1.DefaultDomainName,
		"description": "The default domain", "enabled": true, "tags": []string{}, "options": map[string]any{},
		"links": map[string]any{"self": base + "/v3/domains/" + identityv1alpha1.DefaultDomain},
	}
}

// projectBody is a Project as Keystone shows it; its id is its name.
func projectBody(p *identityv1alpha1.Project, base string) map[string]any {
	return map[string]any{
		"id": p.Name, "name": p.Name, "description": p.Spec.Description,
		"enabled": p.IsEnabled(), "domain_id": identityv1alpha1.DefaultDomain,
		"parent_id": identityv1alpha1.DefaultDomain, "is_domain": false,
		"tags": []string{}, "options": map[string]any{},
		"links": map[string]any{"self": base + "/v3/projects/" + p.Name},
	}
}

// userBody is a User as Keystone shows it: never a password or its hash.
func userBody(u *identityv1alpha1.User, base string) map[string]any {
	b := map[string]any{
		"id": u.Name, "name": u.Name, "domain_id": identityv1alpha1.DefaultDomain,
		"enabled": u.IsEnabled(), "password_expires_at": nil, "options": map[string]any{},
		"links": map[string]any{"self": base + "/v3/users/" + u.Name},
	}
	if u.Spec.Email != "" {
		b["email"] = u.Spec.Email
	}
	if u.Spec.Description != "" {
		b["description"] = u.Spec.Description
	}
	if u.Spec.DefaultProject != "" {
		b["default_project_id"] = u.Spec.DefaultProject
	}
	return b
}

// roleBody is a Role as Keystone shows it.
func roleBody(r *identityv1alpha1.Role, base string) map[string]any {
	return map[string]any{
		"id": r.Name, "name": r.Name, "domain_id": nil, "description": r.Spec.Description,
		"options": map[string]any{}, "links": map[string]any{"self": base + "/v3/roles/" + r.Name},
	}
}

// assignmentName is the RoleAssignment object of a grant: a hash, since
// names of users and roles may hold dots and would be ambiguous joined.
func assignmentName(user, project, role string) string {
	sum := sha256.Sum256([]byte("user\x00" + user + "\x00" + project + "\x00" + role))
	return "u-" + hex.EncodeToString(sum[:10])
}

// assignmentBody is a role assignment as /v3/role_assignments lists it.
func assignmentBody(ra *identityv1alpha1.RoleAssignment, base string, names bool) map[string]any {
	role := map[string]any{"id": ra.Spec.Role}
	project := map[string]any{"id": ra.Spec.Project}
	actorKey, actor := "user", map[string]any{"id": ra.Spec.User}
	if ra.Spec.Group != "" {
		actorKey, actor = "group", map[string]any{"id": ra.Spec.Group}
	}
	if names {
		role["name"] = ra.Spec.Role
		project["name"] = ra.Spec.Project
		project["domain"] = domainRef()
		actor["name"] = actor["id"]
		actor["domain"] = domainRef()
	}
	link := base + "/v3/projects/" + ra.Spec.Project + "/" + actorKey + "s/" + actor["id"].(string) + "/roles/" + ra.Spec.Role
	return map[string]any{
		"role": role, actorKey: actor, "scope": map[string]any{"project": project},
		"links": map[string]any{"assignment": link},
	}
}

// ProjectIDPlaceholder in an Endpoint's URL stands for the token's
// project ID (Swift's storage URL ends in AUTH_<project>), as in
// Keystone's endpoint templates.
const ProjectIDPlaceholder = "$(project_id)s"

// catalogBody is the service catalog of a token scoped to projectID ("":
// unscoped; endpoints whose URL needs a project are left out then, as
// Keystone does).
func catalogBody(endpoints []Endpoint, region, projectID string) []map[string]any {
	catalog := []map[string]any{}
	for _, e := range endpoints {
		url := e.URL
		if strings.Contains(url, ProjectIDPlaceholder) {
			if projectID == "" {
				continue
			}
			url = strings.ReplaceAll(url, ProjectIDPlaceholder, projectID)
		}
		var eps []map[string]any
		for _, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{
				"id": shortID(e.Type + "/" + iface), "interface": iface,
				"region": region, "region_id": region, "url": url,
			})
		}
		catalog = append(catalog, map[string]any{"id": shortID(e.Type), "type": e.Type, "name": e.Name, "endpoints": eps})
	}
	return catalog
}

// shortID is a stable hex id derived from s.
func shortID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:16])
}

// tokenBody is the "token" of a token response.
func tokenBody(c claims, u *identityv1alpha1.User, p *identityv1alpha1.Project, roles []string, catalog []map[string]any) map[string]any {
	t := map[string]any{
		"methods":    c.Methods,
		"user":       map[string]any{"id": u.Name, "name": u.Name, "domain": domainRef(), "password_expires_at": nil},
		"audit_ids":  []string{c.ID},
		"expires_at": formatTime(c.expiresAt()),
		"issued_at":  formatTime(c.issuedAt()),
	}
	if p != nil {
		t["project"] = map[string]any{"id": p.Name, "name": p.Name, "domain": domainRef()}
		t["is_domain"] = false
		rs := []map[string]any{}
		for _, r := range roles {
			rs = append(rs, map[string]any{"id": r, "name": r})
		}
		t["roles"] = rs
	}
	if catalog != nil {
		t["catalog"] = catalog
	}
	return t
}
