package e2e

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// The VirtualMachinePool control-plane tests run on the shared server,
// which has no node: the pool's VMs stay Pending and never become Ready,
// which is exactly the case in which a rolling update must stop after
// replacing maxUnavailable VMs.

// vmPoolManifest is a pool of VMs labelled app=web, selected by selector.
func vmPoolManifest(name, selector, replicas, image string) string {
	return fmt.Sprintf(`apiVersion: compute.strata.io/v1alpha1
kind: VirtualMachinePool
metadata: {name: %s}
spec:
  replicas: %s
  selector: %s
  template:
    metadata: {labels: {app: web}}
    spec: {resources: {vcpus: 1, memoryMiB: 64}, image: %s}
`, name, replicas, selector, image)
}

// poolVMs lists "NAME REVISION-HASH OWNER-KIND/OWNER-NAME" of a pool's VMs, sorted.
func poolVMs(t *testing.T, s *testenv.Server, ns, pool string) []string {
	t.Helper()
	out := s.MustKubectl("get", "vm", "-n", ns, "-l", "compute.strata.io/pool="+pool, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.compute\.strata\.io/pool-revision} {.metadata.ownerReferences[?(@.controller==true)].kind}/{.metadata.ownerReferences[?(@.controller==true)].name}{"\n"}{end}`)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] == "" {
		return nil
	}
	sort.Strings(lines)
	return lines
}

// revisionCounts counts a pool's VMs per revision hash.
func revisionCounts(t *testing.T, s *testenv.Server, ns, pool string) map[string]int {
	counts := map[string]int{}
	for _, line := range poolVMs(t, s, ns, pool) {
		counts[strings.Fields(line)[1]]++
	}
	return counts
}

func poolField(s *testenv.Server, ns, name, template string) string {
	return s.Kubectl("get", "vmpool", name, "-n", ns, "-o", "jsonpath="+template).Stdout
}

// waitPoolVMs waits until the pool has want VMs, all of one revision
// (the pool's update revision), and status says so.
func waitPoolVMs(t *testing.T, s *testenv.Server, ns, pool string, want int) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		counts := revisionCounts(t, s, ns, pool)
		rev := strings.TrimPrefix(poolField(s, ns, pool, "{.status.updateRevision}"), pool+"-")
		if len(counts) != 1 || counts[rev] != want {
			return fmt.Errorf("VMs per revision %v, want %d of %s", counts, want, rev)
		}
		if got := poolField(s, ns, pool, "{.status.replicas}/{.status.updatedReplicas}"); got != fmt.Sprintf("%d/%d", want, want) {
			return fmt.Errorf("status replicas/updated %s, want %d/%d", got, want, want)
		}
		return nil
	})
}

func TestVirtualMachinePool(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	strata := func(args ...string) testenv.Result {
		return testenv.Run(t, s.Bin(), append(args, "-n", ns, "--data-dir", s.DataDir())...)
	}
	s.MustKubectlStdin(vmPoolManifest("web", "{matchLabels: {app: web}}", "3", "img-a"), "create", "-n", ns, "-f", "-")

	// Three VMs named web-XXXXX, labelled with the pool and its revision,
	// controlled by the pool.
	waitPoolVMs(t, s, ns, "web", 3)
	hashA := strings.TrimPrefix(poolField(s, ns, "web", "{.status.updateRevision}"), "web-")
	for _, line := range poolVMs(t, s, ns, "web") {
		f := strings.Fields(line)
		if !strings.HasPrefix(f[0], "web-") || len(f[0]) != len("web-")+5 || f[1] != hashA || f[2] != "VirtualMachinePool/web" {
			t.Errorf("pool VM %q, want web-XXXXX %s VirtualMachinePool/web", line, hashA)
		}
	}
	if got := s.MustKubectl("get", "vm", "-n", ns, "-l", "app=web", "-o", "name"); len(strings.Fields(got)) != 3 {
		t.Errorf("the template's labels are not on the VMs: kubectl get vm -l app=web:\n%s", got)
	}
	if got := jsonpath(t, s, "{.data.spec.image} {.revision}", "get", "controllerrevision", "web-"+hashA, "-n", ns); got != "img-a 1" {
		t.Errorf("controllerrevision web-%s: image and revision %q, want img-a 1", hashA, got)
	}

	// kubectl get shows Deployment-like columns.
	table := s.MustKubectl("get", "vmpool", "-n", ns)
	for header, want := range map[string]string{"DESIRED": "3", "CURRENT": "3", "READY": "0", "UP-TO-DATE": "3", "AVAILABLE": "0"} {
		if got := column(t, table, "web", header); got != want {
			t.Errorf("kubectl get vmpool: %s = %q, want %q:\n%s", header, got, want, table)
		}
	}
	if !strings.Contains(table, "AGE") {
		t.Errorf("kubectl get vmpool has no AGE:\n%s", table)
	}

	// kubectl scale, through the scale subresource.
	if got := s.MustKubectl("scale", "vmpool", "web", "-n", ns, "--replicas=4"); strings.TrimSpace(got) != "virtualmachinepool.compute.strata.io/web scaled" {
		t.Errorf("kubectl scale: %q", got)
	}
	waitPoolVMs(t, s, ns, "web", 4)
	s.MustKubectl("scale", "vmpool", "web", "-n", ns, "--replicas=2")
	waitPoolVMs(t, s, ns, "web", 2)
	if got := jsonpath(t, s, "{.spec.replicas} {.status.replicas} {.status.selector}", "get", "vmpool", "web", "-n", ns, "--subresource=scale"); got != "2 2 app=web" {
		t.Errorf("scale subresource: %q, want 2 2 app=web", got)
	}
	s.MustKubectl("scale", "vmpool", "web", "-n", ns, "--replicas=3")
	waitPoolVMs(t, s, ns, "web", 3)

	// A new template: a new ControllerRevision, and (no VM ever becomes
	// Ready here; maxUnavailable 1, maxSurge 0) one old VM replaced, no more.
	s.MustKubectl("patch", "vmpool", "web", "-n", ns, "--type=merge", "-p", `{"spec":{"template":{"spec":{"image":"img-b"}}}}`)
	var hashB string
	testenv.Eventually(t, 60*time.Second, func() error {
		hashB = strings.TrimPrefix(poolField(s, ns, "web", "{.status.updateRevision}"), "web-")
		if hashB == hashA || hashB == "" {
			return fmt.Errorf("status.updateRevision still web-%s", hashB)
		}
		got := poolField(s, ns, "web", `{.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.conditions[?(@.type=="Progressing")].reason}`)
		if got != "3 1 0 RollingUpdate" {
			return fmt.Errorf("status replicas, updated, ready, Progressing = %q, want 3 1 0 RollingUpdate", got)
		}
		return nil
	})
	if counts := revisionCounts(t, s, ns, "web"); counts[hashB] != 1 || counts[hashA] != 2 {
		t.Errorf("VMs per revision during the rollout %v, want 1 of %s (new) and 2 of %s (old, not ready)", counts, hashB, hashA)
	}
	if got := jsonpath(t, s, "{.data.spec.image} {.revision}", "get", "controllerrevision", "web-"+hashB, "-n", ns); got != "img-b 2" {
		t.Errorf("controllerrevision web-%s: image and revision %q, want img-b 2", hashB, got)
	}
	if r := strata("vmpool", "status", "web", "--watch=false"); r.Err != nil || !strings.Contains(r.Stdout, `Waiting for virtualmachinepool "web" rollout to finish: 1 out of 3 new VMs have been updated`) {
		t.Errorf("strata vmpool status: %s", r)
	}
	if r := strata("vmpool", "history", "web"); r.Err != nil || !strings.Contains(r.Stdout, "web-"+hashA) || !strings.Contains(r.Stdout, "img-b") {
		t.Errorf("strata vmpool history: %s", r)
	}
	describe := s.MustKubectl("describe", "vmpool", "web", "-n", ns)
	for _, want := range []string{"SuccessfulCreate", "Created virtual machine: web-", "SuccessfulDelete", "Rolling out revision 2"} {
		if !strings.Contains(describe, want) {
			t.Errorf("kubectl describe vmpool lacks %q:\n%s", want, describe)
		}
	}

	// Rollback: the previous template comes back, as revision 3.
	if r := strata("vmpool", "rollback", "web"); r.Err != nil || strings.TrimSpace(r.Stdout) != "virtualmachinepool.compute.strata.io/web rolled back" {
		t.Fatalf("strata vmpool rollback: %s", r)
	}
	if got := poolField(s, ns, "web", "{.spec.template.spec.image}"); got != "img-a" {
		t.Errorf("image after the rollback %q, want img-a", got)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if got := poolField(s, ns, "web", "{.status.updateRevision} {.status.updatedReplicas}"); got != "web-"+hashA+" 2" {
			return fmt.Errorf("status updateRevision, updated = %q, want web-%s 2", got, hashA)
		}
		if got := s.Kubectl("get", "controllerrevision", "web-"+hashA, "-n", ns, "-o", "jsonpath={.revision}").Stdout; got != "3" {
			return fmt.Errorf("revision of web-%s %q, want 3", hashA, got)
		}
		return nil
	})
	if r := strata("vmpool", "rollback", "web", "--to-revision", "3"); r.Err != nil || !strings.Contains(r.Stdout, "skipped rollback (current template already matches revision 3)") {
		t.Errorf("rollback to the current revision: %s", r)
	}
	if r := strata("vmpool", "rollback", "web", "--to-revision", "9"); r.Err == nil || !strings.Contains(r.Stderr, "unable to find specified revision 9") {
		t.Errorf("rollback to a missing revision: %s", r)
	}

	// Deleting the pool deletes its VMs (garbage collection).
	s.MustKubectl("delete", "vmpool", "web", "-n", ns)
	testenv.Eventually(t, 60*time.Second, func() error {
		if vms := poolVMs(t, s, ns, "web"); len(vms) != 0 {
			return fmt.Errorf("VMs left after the pool was deleted: %v", vms)
		}
		return nil
	})
}

func TestVirtualMachinePoolValidation(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	for _, c := range []struct{ name, selector, replicas, want string }{
		{"mismatch", "{matchLabels: {app: db}}", "1", "spec.selector: Invalid value: selector does not match template labels"},
		{"empty", "{}", "1", "an empty selector would select every VM"},
		{"negative", "{matchLabels: {app: web}}", "-1", "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0"},
	} {
		r := s.KubectlStdin(vmPoolManifest("bad-"+c.name, c.selector, c.replicas, "img"), "create", "-n", ns, "-f", "-")
		if r.Err == nil || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: %s\nwant a rejection containing %q", c.name, r, c.want)
		}
	}
	bad := strings.Replace(vmPoolManifest("bad-limits", "{matchLabels: {app: web}}", "1", "img"), "  template:", "  strategy: {rollingUpdate: {maxUnavailable: 0, maxSurge: 0}}\n  template:", 1)
	if r := s.KubectlStdin(bad, "create", "-n", ns, "-f", "-"); r.Err == nil || !strings.Contains(r.Stderr, "maxUnavailable and maxSurge cannot both be 0") {
		t.Errorf("maxUnavailable and maxSurge both 0: %s", r)
	}

	// Defaults, and the selector cannot change.
	s.MustKubectlStdin(vmPoolManifest("ok", "{matchLabels: {app: web}}", "0", "img"), "create", "-n", ns, "-f", "-")
	if got := poolField(s, ns, "ok", "{.spec.strategy.type} {.spec.strategy.rollingUpdate.maxUnavailable} {.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit}"); got != "RollingUpdate 1 0 10" {
		t.Errorf("defaults: strategy, maxUnavailable, maxSurge, revisionHistoryLimit = %q, want RollingUpdate 1 0 10", got)
	}
	r := s.Kubectl("patch", "vmpool", "ok", "-n", ns, "--type=merge", "-p", `{"spec":{"selector":{"matchLabels":{"app":null,"tier":"x"}}}}`)
	if r.Err == nil || !strings.Contains(r.Stderr, "selector is immutable") {
		t.Errorf("changing the selector: %s, want a rejection", r)
	}
	// A selector with matchExpressions that miss the labels is reported
	// by the controller (the API server's rules check matchLabels only).
	expr := vmPoolManifest("expr", "{matchExpressions: [{key: app, operator: In, values: [db]}]}", "2", "img")
	s.MustKubectlStdin(expr, "create", "-n", ns, "-f", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		got := poolField(s, ns, "expr", `{.status.conditions[?(@.type=="Progressing")].status} {.status.conditions[?(@.type=="Progressing")].reason}`)
		if got != "False InvalidSelector" {
			return fmt.Errorf("Progressing of a pool whose selector misses its template = %q, want False InvalidSelector", got)
		}
		return nil
	})
	if vms := poolVMs(t, s, ns, "expr"); len(vms) != 0 {
		t.Errorf("VMs made for a pool whose selector misses its template: %v", vms)
	}
}
