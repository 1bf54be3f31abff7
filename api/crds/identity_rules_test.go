package crds

import (
	"strings"
	"testing"
)

// TestIdentityRules runs the identity kinds' CEL rules as the API server
// does (after defaulting).
func TestIdentityRules(t *testing.T) {
	type rule struct{ name, obj, old, want string }
	for crd, cases := range map[string][]rule{
		"roleassignments.identity.strata.io": {
			{"user", `spec: {user: alice, role: member, project: p1}`, "", ""},
			{"group", `spec: {group: devs, role: reader, project: p1}`, "", ""},
			{"both", `spec: {user: alice, group: devs, role: member, project: p1}`, "", "exactly one of user and group"},
			{"neither", `spec: {role: member, project: p1}`, "", "exactly one of user and group"},
			{"changed", `spec: {user: alice, role: admin, project: p1}`, `spec: {user: alice, role: member, project: p1}`, "cannot change"},
		},
		"projects.identity.strata.io": {
			{"plain", `{metadata: {name: p1}, spec: {domain: default, enabled: true}}`, "", ""},
			{"long name", `{metadata: {name: ` + strings.Repeat("a", 64) + `}, spec: {domain: default}}`, "", "at most 63 characters"},
			{"dotted name", `{metadata: {name: a.b}, spec: {domain: default}}`, "", "no dots"},
		},
	} {
		v := celValidator(t, crd)
		for _, c := range cases {
			t.Run(crd+"/"+c.name, func(t *testing.T) {
				got := celErrors(t, v, c.obj, c.old)
				switch {
				case c.want == "" && got != "":
					t.Errorf("rejected: %s", got)
				case c.want != "" && !strings.Contains(got, c.want):
					t.Errorf("errors %q, want one containing %q", got, c.want)
				}
			})
		}
	}
}
