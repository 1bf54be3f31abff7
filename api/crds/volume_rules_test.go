package crds

import (
	"strings"
	"testing"
)

// TestVolumeRules runs the Volume's CEL rules as the API server does.
func TestVolumeRules(t *testing.T) {
	v := celValidator(t, "volumes.storage.strata.io")
	for _, c := range []struct{ name, obj, old, want string }{
		{"plain", `spec: {size: 1Gi}`, "", ""},
		{"two sources", `spec: {size: 1Gi, source: {snapshot: s, image: i}}`, "", "at most one of snapshot, image and volume"},
		{"placed", `spec: {size: 1Gi, node: n1}`, `spec: {size: 1Gi}`, ""},
		{"placed from empty", `spec: {size: 1Gi, node: n1}`, `spec: {size: 1Gi, node: ""}`, ""},
		{"moved", `spec: {size: 1Gi, node: n2}`, `spec: {size: 1Gi, node: n1}`, "node cannot change once set"},
		{"unplaced", `spec: {size: 1Gi}`, `spec: {size: 1Gi, node: n1}`, "node cannot change once set"},
		{"grown", `spec: {size: 2Gi, node: n1}`, `spec: {size: 1Gi, node: n1}`, ""},
		{"source changed", `spec: {size: 1Gi, source: {snapshot: b}}`, `spec: {size: 1Gi, source: {snapshot: a}}`, "source is immutable"},
		{"source added", `spec: {size: 1Gi, source: {snapshot: b}}`, `spec: {size: 1Gi}`, "source is immutable"},
		{"mode changed", `spec: {size: 1Gi, volumeMode: Block}`, `spec: {size: 1Gi, volumeMode: Filesystem}`, "volumeMode is immutable"},
	} {
		t.Run(c.name, func(t *testing.T) {
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
