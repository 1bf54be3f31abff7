package e2e

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

func TestNamespaces(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	all := strings.Fields(s.MustKubectl("get", "namespaces", "-o", "name"))
	for _, want := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"} {
		if !slices.Contains(all, want) {
			t.Errorf("kubectl get namespaces lacks %s: %q", want, all)
		}
	}

	ns := newNamespace(t, s)
	if phase := jsonpath(t, s, "{.status.phase}", "get", "namespace", ns); phase != "Active" {
		t.Errorf("namespace %s phase = %q, want Active", ns, phase)
	}
	s.MustKubectl("label", "namespace", ns, "e2e-team=blue")
	if got := strings.TrimSpace(s.MustKubectl("get", "namespaces", "-l", "e2e-team=blue", "-o", "name")); got != "namespace/"+ns {
		t.Errorf("namespaces labelled e2e-team=blue = %q, want namespace/%s", got, ns)
	}
	if r := s.Kubectl("create", "namespace", ns); r.Err == nil || !strings.Contains(r.Stderr, "AlreadyExists") {
		t.Errorf("creating namespace %s twice: want AlreadyExists, got %s", ns, r)
	}
	// The controller-manager fills every new namespace.
	testenv.Eventually(t, controllerTimeout, func() error {
		if r := s.Kubectl("get", "serviceaccount", "default", "-n", ns); r.Err != nil {
			return fmt.Errorf("default ServiceAccount: %s", r.Stderr)
		}
		if r := s.Kubectl("get", "configmap", "kube-root-ca.crt", "-n", ns); r.Err != nil {
			return fmt.Errorf("kube-root-ca.crt ConfigMap: %s", r.Stderr)
		}
		return nil
	})
}

func TestConfigMaps(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)

	file := filepath.Join(t.TempDir(), "app.properties")
	if err := os.WriteFile(file, []byte("color=blue\nsize=3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.MustKubectl("create", "configmap", "literal", "-n", ns, "--from-literal=a=1", "--from-literal=b=two words")
	s.MustKubectl("create", "configmap", "fromfile", "-n", ns, "--from-file="+file)

	if got := jsonpath(t, s, "{.data.b}", "get", "configmap", "literal", "-n", ns); got != "two words" {
		t.Errorf("literal .data.b = %q, want %q", got, "two words")
	}
	var cm configMap
	getJSON(t, s, &cm, "configmap", "fromfile", "-n", ns)
	if got := cm.Data["app.properties"]; got != "color=blue\nsize=3\n" {
		t.Errorf("fromfile .data[app.properties] = %q", got)
	}

	s.MustKubectl("patch", "configmap", "literal", "-n", ns, "--type=merge", "-p", `{"data":{"a":"2"}}`)
	if got := jsonpath(t, s, "{.data.a}", "get", "configmap", "literal", "-n", ns); got != "2" {
		t.Errorf("after patch .data.a = %q, want 2", got)
	}

	var cms list[configMap]
	getJSON(t, s, &cms, "configmaps", "-n", ns, "-l", "!no-such-label")
	var names []string
	for _, c := range cms.Items {
		names = append(names, c.Metadata.Name)
	}
	for _, want := range []string{"literal", "fromfile"} {
		if !slices.Contains(names, want) {
			t.Errorf("configmaps in %s = %q, lack %s", ns, names, want)
		}
	}

	s.MustKubectl("delete", "configmap", "literal", "-n", ns)
	requireNotFound(t, s, "configmap", "literal", "-n", ns)
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	const password = "p@ss w0rd/ünïcode"
	s.MustKubectl("create", "secret", "generic", "db", "-n", ns, "--from-literal=username=admin", "--from-literal=password="+password)

	if got := jsonpath(t, s, "{.type}", "get", "secret", "db", "-n", ns); got != "Opaque" {
		t.Errorf("secret type = %q, want Opaque", got)
	}
	encoded := jsonpath(t, s, "{.data.password}", "get", "secret", "db", "-n", ns)
	if encoded == password {
		t.Errorf("secret data is not base64-encoded: %q", encoded)
	}
	if got := decodeBase64(t, encoded); got != password {
		t.Errorf("decoded password = %q, want %q", got, password)
	}
	if got := decodeBase64(t, jsonpath(t, s, "{.data.username}", "get", "secret", "db", "-n", ns)); got != "admin" {
		t.Errorf("decoded username = %q, want admin", got)
	}
	// Opaque secrets keep their data across an update of other keys.
	s.MustKubectl("patch", "secret", "db", "-n", ns, "--type=merge", "-p", `{"stringData":{"extra":"x"}}`)
	if got := decodeBase64(t, jsonpath(t, s, "{.data.extra}", "get", "secret", "db", "-n", ns)); got != "x" {
		t.Errorf("decoded extra = %q, want x", got)
	}
	if got := decodeBase64(t, jsonpath(t, s, "{.data.password}", "get", "secret", "db", "-n", ns)); got != password {
		t.Errorf("password after patch = %q, want %q", got, password)
	}
}

// podsOf lists the pods with label app=name.
func podsOf(t *testing.T, s *testenv.Server, ns, app string) []pod {
	t.Helper()
	var pods list[pod]
	getJSON(t, s, &pods, "pods", "-n", ns, "-l", "app="+app)
	return pods.Items
}

func TestDeploymentStaysPendingAndScales(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	s.MustKubectl("create", "deployment", "web", "-n", ns, "--image=registry.k8s.io/pause:3.10", "--replicas=2")

	// The deployment controller makes a ReplicaSet, which makes the pods.
	testenv.Eventually(t, controllerTimeout, func() error {
		var rs list[struct {
			Metadata objectMeta `json:"metadata"`
		}]
		getJSON(t, s, &rs, "replicasets", "-n", ns, "-l", "app=web")
		if len(rs.Items) != 1 {
			return fmt.Errorf("%d ReplicaSets, want 1", len(rs.Items))
		}
		owners := rs.Items[0].Metadata.OwnerReferences
		if len(owners) != 1 || owners[0].Kind != "Deployment" || owners[0].Name != "web" {
			return fmt.Errorf("ReplicaSet owners = %+v, want Deployment web", owners)
		}
		return nil
	})
	// With no nodes, the scheduler marks the pods unschedulable and they
	// stay Pending.
	waitPendingPods := func(n int) {
		t.Helper()
		testenv.Eventually(t, controllerTimeout, func() error {
			pods := podsOf(t, s, ns, "web")
			if len(pods) != n {
				return fmt.Errorf("%d pods, want %d", len(pods), n)
			}
			for _, p := range pods {
				if p.Status.Phase != "Pending" || p.Spec.NodeName != "" {
					return fmt.Errorf("pod %s: phase %q on node %q, want Pending on none", p.Metadata.Name, p.Status.Phase, p.Spec.NodeName)
				}
				unschedulable := false
				for _, c := range p.Status.Conditions {
					unschedulable = unschedulable || c.Type == "PodScheduled" && c.Status == "False" && c.Reason == "Unschedulable"
				}
				if !unschedulable {
					return fmt.Errorf("pod %s: no PodScheduled=False/Unschedulable condition yet: %+v", p.Metadata.Name, p.Status.Conditions)
				}
			}
			return nil
		})
	}
	waitPendingPods(2)

	s.MustKubectl("scale", "deployment", "web", "-n", ns, "--replicas=4")
	if got := jsonpath(t, s, "{.spec.replicas}", "get", "deployment", "web", "-n", ns); got != "4" {
		t.Errorf("after scale, spec.replicas = %s, want 4", got)
	}
	waitPendingPods(4)
	testenv.Eventually(t, controllerTimeout, func() error {
		got := jsonpath(t, s, "{.status.replicas}/{.status.readyReplicas}", "get", "deployment", "web", "-n", ns)
		if got != "4/" {
			return fmt.Errorf("status replicas/ready = %q, want 4/ (none ready)", got)
		}
		return nil
	})

	s.MustKubectl("scale", "deployment", "web", "-n", ns, "--replicas=0")
	testenv.Eventually(t, controllerTimeout, func() error {
		if pods := podsOf(t, s, ns, "web"); len(pods) != 0 {
			return fmt.Errorf("%d pods left after scaling to 0", len(pods))
		}
		return nil
	})
}

func TestSelectors(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	for name, labels := range map[string]string{
		"web-1": "tier=web,env=prod",
		"web-2": "tier=web,env=dev",
		"db-1":  "tier=db,env=prod",
	} {
		s.MustKubectl("create", "configmap", name, "-n", ns)
		s.MustKubectl(append([]string{"label", "configmap", name, "-n", ns}, strings.Split(labels, ",")...)...)
	}
	names := func(args ...string) []string {
		t.Helper()
		out := s.MustKubectl(append([]string{"get", "configmaps", "-n", ns, "-o", "name"}, args...)...)
		got := strings.Fields(out)
		slices.Sort(got)
		return got
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-l", "tier=web"}, []string{"web-1", "web-2"}},
		{[]string{"-l", "tier=web,env=prod"}, []string{"web-1"}},
		{[]string{"-l", "tier!=web,env"}, []string{"db-1"}},
		{[]string{"-l", "env in (dev,test)"}, []string{"web-2"}},
		{[]string{"-l", "tier,!nothing"}, []string{"db-1", "web-1", "web-2"}},
		{[]string{"--field-selector", "metadata.name=web-2"}, []string{"web-2"}},
		{[]string{"--field-selector", "metadata.name!=web-2", "-l", "env=prod"}, []string{"db-1", "web-1"}},
		{[]string{"--field-selector", "metadata.name=nothing"}, nil},
	} {
		var want []string
		for _, w := range tc.want {
			want = append(want, "configmap/"+w)
		}
		if got := names(tc.args...); !slices.Equal(got, want) {
			t.Errorf("kubectl get configmaps %s = %q, want %q", strings.Join(tc.args, " "), got, want)
		}
	}
	if r := s.Kubectl("get", "configmaps", "-n", ns, "--field-selector", "data.x=y"); r.Err == nil || !strings.Contains(r.Stderr, `"data.x"`) {
		t.Errorf("unsupported field selector: want an error naming it, got %s", r)
	}
}

func TestDryRun(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	s.MustKubectl("create", "configmap", "keep", "-n", ns, "--from-literal=a=b")
	deployment := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: dry-apply
  namespace: %s
spec:
  replicas: 1
  selector: {matchLabels: {app: dry-apply}}
  template:
    metadata: {labels: {app: dry-apply}}
    spec:
      containers: [{name: pause, image: registry.k8s.io/pause:3.10}]
`, ns)
	for _, tc := range []struct {
		name     string
		stdin    string
		args     []string
		wantOut  string
		mustMiss []string // kubectl get args that must find nothing afterwards
		mustHave []string // kubectl get args that must still find the object
	}{
		{name: "create server", args: []string{"create", "configmap", "dry-server", "--from-literal=a=b", "--dry-run=server", "-o", "jsonpath={.metadata.name}"},
			wantOut: "dry-server", mustMiss: []string{"configmap", "dry-server"}},
		{name: "create client", args: []string{"create", "configmap", "dry-client", "--from-literal=a=b", "--dry-run=client", "-o", "jsonpath={.metadata.name}"},
			wantOut: "dry-client", mustMiss: []string{"configmap", "dry-client"}},
		{name: "apply server", stdin: deployment, args: []string{"apply", "-f", "-", "--dry-run=server"},
			wantOut: "deployment.apps/dry-apply created (server dry run)", mustMiss: []string{"deployment", "dry-apply"}},
		{name: "apply client", stdin: deployment, args: []string{"apply", "-f", "-", "--dry-run=client"},
			wantOut: "deployment.apps/dry-apply created (dry run)", mustMiss: []string{"deployment", "dry-apply"}},
		{name: "delete server", args: []string{"delete", "configmap", "keep", "--dry-run=server"},
			wantOut: `configmap "keep" deleted (server dry run)`, mustHave: []string{"configmap", "keep"}},
		{name: "patch server", args: []string{"patch", "configmap", "keep", "--dry-run=server", "-p", `{"data":{"a":"changed"}}`, "-o", "jsonpath={.data.a}"},
			wantOut: "changed", mustHave: []string{"configmap", "keep"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := s.For(t)
			out := s.MustKubectlStdin(tc.stdin, append(tc.args, "-n", ns)...)
			if !strings.Contains(out, tc.wantOut) {
				t.Errorf("output %q lacks %q", out, tc.wantOut)
			}
			if tc.mustMiss != nil {
				requireNotFound(t, s, append(tc.mustMiss, "-n", ns)...)
			}
			if tc.mustHave != nil {
				s.MustKubectl(append(append([]string{"get"}, tc.mustHave...), "-n", ns)...)
			}
		})
	}
	// Nothing that a dry run "created" made it into the namespace, and the
	// dry-run patch changed nothing.
	if got := jsonpath(t, s, "{.data.a}", "get", "configmap", "keep", "-n", ns); got != "b" {
		t.Errorf("keep .data.a = %q after dry runs, want b", got)
	}
	if out := s.MustKubectl("get", "deployments,replicasets,pods", "-n", ns, "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("dry runs left objects behind: %s", out)
	}
}

func TestPatchTypes(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	const containers = "{range .spec.template.spec.containers[*]}{.name}={.image};{end}"
	for i, tc := range []struct {
		name, typ, patch string
		template, want   string
		wantErr          string
	}{
		{name: "strategic merges lists by key", typ: "strategic",
			patch:    `{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"registry.k8s.io/pause:3.9"}]}}}}`,
			template: containers, want: "pause=registry.k8s.io/pause:3.10;sidecar=registry.k8s.io/pause:3.9;"},
		{name: "strategic updates a list item", typ: "strategic",
			patch:    `{"spec":{"template":{"spec":{"containers":[{"name":"pause","image":"registry.k8s.io/pause:3.9"}]}}}}`,
			template: containers, want: "pause=registry.k8s.io/pause:3.9;"},
		{name: "merge replaces lists", typ: "merge",
			patch:    `{"spec":{"template":{"spec":{"containers":[{"name":"other","image":"registry.k8s.io/pause:3.9"}]}}}}`,
			template: containers, want: "other=registry.k8s.io/pause:3.9;"},
		{name: "merge sets and deletes map keys", typ: "merge",
			patch:    `{"metadata":{"labels":{"patched":"merge","app":null}}}`,
			template: "{.metadata.labels}", want: `{"patched":"merge"}`},
		{name: "json operations", typ: "json",
			patch:    `[{"op":"replace","path":"/spec/replicas","value":3},{"op":"add","path":"/metadata/labels/patched","value":"json"}]`,
			template: "{.spec.replicas} {.metadata.labels.patched}", want: "3 json"},
		{name: "json test operation fails", typ: "json",
			patch:   `[{"op":"test","path":"/spec/replicas","value":99}]`,
			wantErr: "The request is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := s.For(t)
			name := fmt.Sprintf("patch-%d", i)
			s.MustKubectl("create", "deployment", name, "-n", ns, "--image=registry.k8s.io/pause:3.10")
			r := s.Kubectl("patch", "deployment", name, "-n", ns, "--type="+tc.typ, "-p", tc.patch)
			if tc.wantErr != "" {
				if r.Err == nil || !strings.Contains(r.Stderr, tc.wantErr) {
					t.Fatalf("want an error with %q, got %s", tc.wantErr, r)
				}
				if got := jsonpath(t, s, "{.spec.replicas}", "get", "deployment", name, "-n", ns); got != "1" {
					t.Errorf("failed patch changed replicas to %s", got)
				}
				return
			}
			if r.Err != nil {
				t.Fatalf("kubectl patch: %s", r)
			}
			got := jsonpath(t, s, tc.template, "get", "deployment", name, "-n", ns)
			if tc.template == containers {
				// Compare as sets: how a merge orders list items is not the point.
				got, tc.want = sortedItems(got), sortedItems(tc.want)
			}
			if got != tc.want {
				t.Errorf("%s = %q, want %q", tc.template, got, tc.want)
			}
		})
	}
}

func TestClientSideApply(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	manifest := func(data string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: csa\n  namespace: %s\ndata:\n%s", ns, data)
	}
	steps := []struct {
		data    string
		wantOut string
		want    map[string]string
	}{
		{"  a: \"1\"\n  b: \"2\"\n", "configmap/csa created", map[string]string{"a": "1", "b": "2"}},
		// b is dropped from the manifest, so apply removes it.
		{"  a: \"10\"\n  c: \"3\"\n", "configmap/csa configured", map[string]string{"a": "10", "c": "3"}},
		{"  a: \"10\"\n  c: \"3\"\n", "configmap/csa unchanged", map[string]string{"a": "10", "c": "3"}},
	}
	for i, step := range steps {
		out := s.MustKubectlStdin(manifest(step.data), "apply", "-f", "-")
		if strings.TrimSpace(out) != step.wantOut {
			t.Errorf("apply #%d printed %q, want %q", i+1, out, step.wantOut)
		}
		var cm configMap
		getJSON(t, s, &cm, "configmap", "csa", "-n", ns)
		if !maps.Equal(cm.Data, step.want) {
			t.Errorf("after apply #%d data = %v, want %v", i+1, cm.Data, step.want)
		}
		if last := cm.Metadata.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; !strings.Contains(last, `"a":"`+step.want["a"]+`"`) {
			t.Errorf("after apply #%d last-applied-configuration = %q", i+1, last)
		}
	}
	// A change made outside apply to a field apply never set survives.
	s.MustKubectl("label", "configmap", "csa", "-n", ns, "outside=yes")
	s.MustKubectlStdin(manifest("  a: \"11\"\n  c: \"3\"\n"), "apply", "-f", "-")
	if got := jsonpath(t, s, "{.data.a} {.metadata.labels.outside}", "get", "configmap", "csa", "-n", ns); got != "11 yes" {
		t.Errorf("after apply over a label change: %q, want %q", got, "11 yes")
	}
}

func TestServerSideApply(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	manifest := func(data string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\n  namespace: %s\ndata:\n%s", ns, data)
	}
	apply := func(manager, data string, extra ...string) testenv.Result {
		t.Helper()
		return s.KubectlStdin(manifest(data), append([]string{"apply", "--server-side", "--field-manager=" + manager, "-f", "-"}, extra...)...)
	}
	data := func() map[string]string {
		t.Helper()
		var cm configMap
		getJSON(t, s, &cm, "configmap", "ssa", "-n", ns)
		return cm.Data
	}

	if r := apply("alice", "  owner: alice\n"); r.Err != nil || !strings.Contains(r.Stdout, "configmap/ssa serverside-applied") {
		t.Fatalf("first server-side apply: %s", r)
	}
	// bob sets another key: no conflict, alice's field stays.
	if r := apply("bob", "  extra: bob\n"); r.Err != nil {
		t.Fatalf("non-conflicting apply by bob: %s", r)
	}
	if got, want := data(), map[string]string{"owner": "alice", "extra": "bob"}; !maps.Equal(got, want) {
		t.Errorf("after two managers: data = %v, want %v", got, want)
	}
	// bob now claims alice's field: a conflict naming alice and the field.
	r := apply("bob", "  owner: bob\n  extra: bob\n")
	if r.Err == nil || !strings.Contains(r.Stderr, "conflict") || !strings.Contains(r.Stderr, `"alice"`) || !strings.Contains(r.Stderr, ".data.owner") {
		t.Fatalf("conflicting apply: want a conflict with alice on .data.owner, got %s", r)
	}
	if got := data()["owner"]; got != "alice" {
		t.Errorf("conflicting apply changed owner to %q", got)
	}
	if r := apply("bob", "  owner: bob\n  extra: bob\n", "--force-conflicts"); r.Err != nil {
		t.Fatalf("apply --force-conflicts: %s", r)
	}
	if got := data()["owner"]; got != "bob" {
		t.Errorf("after --force-conflicts owner = %q, want bob", got)
	}
	var cm configMap
	getJSON(t, s, &cm, "configmap", "ssa", "-n", ns, "--show-managed-fields")
	owners := map[string]bool{}
	for _, mf := range cm.Metadata.ManagedFields {
		if mf.Operation == "Apply" && strings.Contains(string(mf.FieldsV1), `"f:owner"`) {
			owners[mf.Manager] = true
		}
	}
	if !owners["bob"] || owners["alice"] {
		t.Errorf("managers of .data.owner = %v, want bob only; managedFields: %+v", owners, cm.Metadata.ManagedFields)
	}
}

// sortedItems sorts the ";"-terminated items of s.
func sortedItems(s string) string {
	items := strings.Split(strings.TrimSuffix(s, ";"), ";")
	slices.Sort(items)
	return strings.Join(items, ";")
}
