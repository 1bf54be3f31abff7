package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// poolVMState is what the rollout checks of a pool's VM.
type poolVMState struct {
	name, image string
	ready       bool
}

// poolVMStates lists a pool's live VMs (not being deleted).
func poolVMStates(t *testing.T, s *testenv.Server, ns, pool string) []poolVMState {
	t.Helper()
	var list struct {
		Items []struct {
			Metadata struct {
				Name              string  `json:"name"`
				DeletionTimestamp *string `json:"deletionTimestamp"`
			} `json:"metadata"`
			Spec struct {
				Image string `json:"image"`
			} `json:"spec"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	getJSON(t, s, &list, "vm", "-n", ns, "-l", "compute.strata.io/pool="+pool)
	var out []poolVMState
	for _, vm := range list.Items {
		if vm.Metadata.DeletionTimestamp != nil {
			continue
		}
		st := poolVMState{name: vm.Metadata.Name, image: vm.Spec.Image}
		for _, c := range vm.Status.Conditions {
			st.ready = st.ready || (c.Type == "Ready" && c.Status == "True")
		}
		out = append(out, st)
	}
	return out
}

// watchPoolRollout follows a 3-VM pool (maxUnavailable 1, maxSurge 0)
// until all its VMs run image and are Ready. For an update (not the
// pool's first VMs, made together) it checks at every look that the pool
// never has more than 3 VMs nor more than one VM of the new image that is
// not Ready: the rollout goes one VM at a time.
func watchPoolRollout(t *testing.T, s *testenv.Server, ns, pool, image string, update bool) {
	t.Helper()
	began := time.Now()
	testenv.Eventually(t, 15*time.Minute, func() error {
		vms := poolVMStates(t, s, ns, pool)
		updated, booting, ready := 0, 0, 0
		for _, vm := range vms {
			if vm.image == image {
				updated++
				if !vm.ready {
					booting++
				}
			}
			if vm.ready {
				ready++
			}
		}
		if update && (len(vms) > 3 || booting > 1) {
			t.Errorf("pool %s rolling to %s has %d VMs, %d of them new and not ready (want at most 3 and 1): %+v", pool, image, len(vms), booting, vms)
		}
		if updated != 3 || ready != 3 || len(vms) != 3 {
			return fmt.Errorf("pool %s: %d VMs, %d on %s, %d ready: %+v", pool, len(vms), updated, image, ready, vms)
		}
		return nil
	})
	t.Logf("pool %s rolled to %s in %s", pool, image, time.Since(began).Round(time.Second))
	r := testenv.Run(t, s.Bin(), "vmpool", "status", pool, "--timeout", "1m", "-n", ns, "--data-dir", s.DataDir())
	if r.Err != nil || r.Stdout == "" {
		t.Errorf("strata vmpool status after the rollout: %s", r)
	}
}

// VMPoolRollsOnNode is the node-level pool check, for a cluster with a
// node that runs VMs (TestNode calls it as a step): a pool of 3 VMs of
// imageA rolls to imageB one VM at a time, then `strata vmpool rollback`
// rolls it back to imageA the same way. Both images must be uploaded in
// ns (strata image upload) and boot; they may hold the same disk. The
// pool is deleted at the end, with its VMs.
func VMPoolRollsOnNode(t *testing.T, s *testenv.Server, ns, imageA, imageB string) {
	t.Helper()
	const pool = "rolling"
	manifest := fmt.Sprintf(`apiVersion: compute.strata.io/v1alpha1
kind: VirtualMachinePool
metadata: {name: %s}
spec:
  replicas: 3
  selector: {matchLabels: {app: rolling}}
  template:
    metadata: {labels: {app: rolling}}
    spec: {resources: {vcpus: 1, memoryMiB: 256}, image: %s}
`, pool, imageA)
	s.MustKubectlStdin(manifest, "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vmpool", pool, "-n", ns, "--ignore-not-found", "--wait=false") })
	watchPoolRollout(t, s, ns, pool, imageA, false)
	if got := poolField(s, ns, pool, "{.status.readyReplicas} {.status.availableReplicas}"); got != "3 3" {
		t.Errorf("pool status ready, available = %q, want 3 3", got)
	}

	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"image": imageB}}}})
	if err != nil {
		t.Fatal(err)
	}
	s.MustKubectl("patch", "vmpool", pool, "-n", ns, "--type=merge", "-p", string(patch))
	watchPoolRollout(t, s, ns, pool, imageB, true)

	r := testenv.Run(t, s.Bin(), "vmpool", "rollback", pool, "-n", ns, "--data-dir", s.DataDir())
	if r.Err != nil {
		t.Fatalf("strata vmpool rollback: %s", r)
	}
	watchPoolRollout(t, s, ns, pool, imageA, true)

	s.MustKubectl("delete", "vmpool", pool, "-n", ns)
	testenv.Eventually(t, 3*time.Minute, func() error {
		if vms := poolVMStates(t, s, ns, pool); len(vms) != 0 {
			return fmt.Errorf("VMs left after deleting the pool: %+v", vms)
		}
		return nil
	})
}
