package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.example.com
spec:
  group: test.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, description: "size is how big the widget is."}
              color: {type: string, enum: [red, blue]}
`

func widget(ns, name, spec string) string {
	return fmt.Sprintf("apiVersion: test.example.com/v1\nkind: Widget\nmetadata:\n  name: %s\n  namespace: %s\nspec: %s\n", name, ns, spec)
}

func TestCustomResources(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	s.MustKubectlStdin(widgetCRD, "apply", "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "crd", "widgets.test.example.com", "--ignore-not-found", "--wait=false") })
	s.MustKubectl("wait", "--for=condition=Established", "crd/widgets.test.example.com", "--timeout=60s")

	// kubectl's discovery refreshes on an unknown kind, so this works at
	// once; Eventually covers the apiserver publishing the new API.
	testenv.Eventually(t, controllerTimeout, func() error {
		if r := s.KubectlStdin(widget(ns, "w1", "{size: 3, color: red}"), "create", "-f", "-"); r.Err != nil {
			return fmt.Errorf("create widget: %s", r.Stderr)
		}
		return nil
	})
	s.MustKubectlStdin(widget(ns, "w2", "{size: 5}"), "create", "-f", "-")

	if got := jsonpath(t, s, "{.spec.size} {.spec.color}", "get", "wdg", "w1", "-n", ns); got != "3 red" {
		t.Errorf("widget w1 spec = %q, want %q", got, "3 red")
	}
	table := s.MustKubectl("get", "widgets", "-n", ns)
	if got := column(t, table, "w2", "SIZE"); got != "5" {
		t.Errorf("SIZE of w2 = %q, want 5; table:\n%s", got, table)
	}
	if got := strings.Fields(s.MustKubectl("get", "widgets.test.example.com", "-A", "-o", "name")); len(got) != 2 {
		t.Errorf("widgets in all namespaces = %q, want 2", got)
	}
	out := s.MustKubectl("explain", "widgets.spec.size")
	if !strings.Contains(out, "how big the widget is") {
		t.Errorf("explain widgets.spec.size lacks the schema's description:\n%s", out)
	}

	for _, tc := range []struct{ spec, want string }{
		{"{size: 0}", "spec.size"},
		{"{color: red}", "spec.size"},
		{"{size: 1, color: green}", "spec.color"},
	} {
		r := s.KubectlStdin(widget(ns, "bad", tc.spec), "create", "-f", "-")
		if r.Err == nil || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("widget with spec %s: want a rejection naming %s, got %s", tc.spec, tc.want, r)
		}
	}
	requireNotFound(t, s, "widget", "bad", "-n", ns)

	s.MustKubectl("patch", "widget", "w1", "-n", ns, "--type=merge", "-p", `{"spec":{"size":4}}`)
	if got := jsonpath(t, s, "{.spec.size}", "get", "widget", "w1", "-n", ns); got != "4" {
		t.Errorf("after merge patch size = %s, want 4", got)
	}
	if r := s.Kubectl("patch", "widget", "w1", "-n", ns, "--type=strategic", "-p", `{"spec":{"size":6}}`); r.Err == nil {
		t.Errorf("strategic merge patch on a custom resource: want an error, got %s", r)
	}
	s.MustKubectl("delete", "widget", "w1", "-n", ns)
	requireNotFound(t, s, "widget", "w1", "-n", ns)

	// Deleting the CRD removes its API and its objects.
	s.MustKubectl("delete", "crd", "widgets.test.example.com", "--timeout=60s")
	testenv.Eventually(t, controllerTimeout, func() error {
		r := s.Kubectl("get", "widgets.test.example.com", "-A")
		if r.Err == nil {
			return fmt.Errorf("widgets still served after their CRD was deleted: %s", r.Stdout)
		}
		return nil
	})
}

// column returns the cell in the column named header of the row whose
// first cell is row, in kubectl's table output.
func column(t *testing.T, table, row, header string) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("not a table:\n%s", table)
	}
	start := strings.Index(lines[0], header)
	if start < 0 || (start > 0 && lines[0][start-1] != ' ') {
		t.Fatalf("no column %s in:\n%s", header, table)
	}
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) > 0 && f[0] == row {
			if start >= len(line) {
				return ""
			}
			return strings.Fields(line[start:])[0]
		}
	}
	t.Fatalf("no row %s in:\n%s", row, table)
	return ""
}

func flavor(name, spec string) string {
	return fmt.Sprintf("apiVersion: compute.strata.io/v1alpha1\nkind: Flavor\nmetadata:\n  name: %s\nspec: %s\n", name, spec)
}

func TestFlavors(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	name := "e2e-small-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", name, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(name, `{vcpus: 2, ramMiB: 2048, diskGiB: 20, extraSpecs: {"hw:cpu_policy": dedicated}}`), "create", "-f", "-")

	table := s.MustKubectl("get", "flavors")
	if got := column(t, table, name, "VCPUS"); got != "2" {
		t.Errorf("VCPUS of %s = %q, want 2; table:\n%s", name, got, table)
	}
	for _, h := range []string{"VCPUS", "RAM", "DISK", "PUBLIC", "AGE"} {
		if !strings.Contains(strings.SplitN(table, "\n", 2)[0], h) {
			t.Errorf("kubectl get flavors header lacks %s:\n%s", h, table)
		}
	}
	// Defaults from the schema, the short name, and cluster scope.
	var f struct {
		Spec struct {
			IsPublic   *bool             `json:"isPublic"`
			RAMMiB     int64             `json:"ramMiB"`
			ExtraSpecs map[string]string `json:"extraSpecs"`
		} `json:"spec"`
	}
	getJSON(t, s, &f, "flv", name)
	if f.Spec.IsPublic == nil || !*f.Spec.IsPublic || f.Spec.RAMMiB != 2048 || f.Spec.ExtraSpecs["hw:cpu_policy"] != "dedicated" {
		t.Errorf("flavor %s spec = %+v, want isPublic defaulted to true, ramMiB 2048, extraSpecs kept", name, f.Spec)
	}
	if got := jsonpath(t, s, "{.metadata.namespace}", "get", "flavor", name); got != "" {
		t.Errorf("flavor has namespace %q; flavors are cluster-scoped", got)
	}
	// Like Nova flavors, the shape is fixed once created; extra specs are not.
	if r := s.Kubectl("patch", "flavor", name, "--type=merge", "-p", `{"spec":{"vcpus":4}}`); r.Err == nil || !strings.Contains(r.Stderr, "cannot change after creation") {
		t.Errorf("changing vcpus: want a rejection, got %s", r)
	}
	s.MustKubectl("patch", "flavor", name, "--type=merge", "-p", `{"spec":{"extraSpecs":{"hw:mem_page_size":"large"}}}`)
	if got := column(t, s.MustKubectl("get", "flavor", name), name, "VCPUS"); got != "2" {
		t.Errorf("VCPUS after patches = %q, want 2", got)
	}
	if r := s.Kubectl("patch", "flavor", name, "--type=strategic", "-p", `{"spec":{"extraSpecs":{"a":"b"}}}`); r.Err == nil {
		t.Errorf("strategic merge patch on a Flavor (a custom resource): want an error, got %s", r)
	}

	for _, tc := range []struct {
		name, spec string
		args       []string
		want       string
	}{
		{"negative vcpus", "{vcpus: -1, ramMiB: 512}", nil, "spec.vcpus"},
		{"zero vcpus", "{vcpus: 0, ramMiB: 512}", nil, "spec.vcpus"},
		{"missing vcpus", "{ramMiB: 512}", nil, "spec.vcpus"},
		{"too little ram", "{vcpus: 1, ramMiB: 8}", nil, "spec.ramMiB"},
		{"negative disk", "{vcpus: 1, ramMiB: 512, diskGiB: -1}", nil, "spec.diskGiB"},
		{"negative vcpus, server dry run", "{vcpus: -1, ramMiB: 512}", []string{"--dry-run=server"}, "spec.vcpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := s.For(t)
			bad := "e2e-bad-" + randomSuffix(t)
			r := s.KubectlStdin(flavor(bad, tc.spec), append([]string{"create", "-f", "-"}, tc.args...)...)
			if r.Err == nil || !strings.Contains(r.Stderr, tc.want) || !strings.Contains(r.Stderr, "Invalid") {
				t.Errorf("want the flavor rejected as Invalid naming %s, got %s", tc.want, r)
			}
			requireNotFound(t, s, "flavor", bad)
		})
	}
}
