package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// pingerPod asks the VM's address for its page five times a second from
// another node, logging "<uptime> ok|fail" per try.
func pingerPod(node, ip string) string {
	return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: pinger}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: pinger
    image: %s
    imagePullPolicy: Never
    command: [sh, -c, 'while true; do t=$(cut -d" " -f1 /proc/uptime); if timeout 1 wget -qO- http://%s/ >/dev/null 2>&1; then echo "$t ok"; else echo "$t fail"; fi; usleep 200000; done']
`, node, busyboxImage, ip)
}

// longestOutage is the longest time between two successful tries in a
// pinger log, and whether any try succeeded after a failure.
func longestOutage(log string) (worst time.Duration, tries int) {
	var lastOK float64 = -1
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		at, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		tries++
		if f[1] != "ok" {
			continue
		}
		if lastOK >= 0 {
			if gap := time.Duration((at - lastOK) * float64(time.Second)); gap > worst {
				worst = gap
			}
		}
		lastOK = at
	}
	return worst, tries
}

// vmMigrates boots a VM on one node and moves it to another while a pod on
// a third node keeps asking it for its page: same IP, same MAC, the disk
// moves along, and the page is unreachable for only a moment. Then a
// migration to a node that does not exist fails, and the VM keeps running.
func vmMigrates(t *testing.T, s *testenv.Server, ns string, nodes []string) {
	// The step before restarts an agent: its node must be back before a
	// migration can target it.
	s.WaitNodesReady(t, 3*time.Minute, nodes...)
	uploadTestVMImage(t, s, ns, "migvm")
	fl := "e2e-mig-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 1, ramMiB: 256, diskGiB: 1}`), "create", "-f", "-")
	manifest := fmt.Sprintf("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: mig1, labels: {app: mig}}\nspec:\n  flavor: %s\n  image: migvm\n  userData: |\n%s",
		fl, "    "+strings.ReplaceAll(strings.TrimSuffix(vmUserData, "\n"), "\n", "\n    ")+"\n")
	s.MustKubectlStdin(manifest, "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vm", "mig1", "-n", ns, "--wait=false") })
	waitGuest := func(pod string) {
		testenv.Eventually(t, 3*time.Minute, func() error {
			if phase := vmField(s, ns, "mig1", "{.status.phase}"); phase != "Running" {
				return fmt.Errorf("VM phase %q", phase)
			}
			logs := s.Kubectl("logs", "-n", ns, pod).Stdout
			if !strings.Contains(logs, testimage.Marker) || !strings.Contains(logs, "strata-testimage: eth0") {
				return fmt.Errorf("no boot marker and DHCP lease on %s's console yet:\n%s", pod, lastBytes(logs, 1024))
			}
			return nil
		})
	}
	waitGuest("vm-mig1")
	ip := vmField(s, ns, "mig1", "{.status.ips[0]}")
	source := vmField(s, ns, "mig1", "{.status.nodeName}")
	others := slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == source })
	target, client := others[0], others[1]
	t.Logf("VM mig1 (%s) runs on %s; moving it to %s, watched from %s", ip, source, target, client)

	s.MustKubectlStdin(pingerPod(client, ip), "apply", "-n", ns, "-f", "-")
	// Gone before the next steps even when this one fails: a drain
	// refuses a pod without controller.
	t.Cleanup(func() {
		s.Kubectl("delete", "pod", "pinger", "-n", ns, "--ignore-not-found", "--grace-period=1", "--timeout=60s")
	})
	testenv.Eventually(t, 60*time.Second, func() error {
		if !strings.Contains(s.Kubectl("logs", "-n", ns, "pinger").Stdout, " ok") {
			return fmt.Errorf("the pinger on %s does not reach the VM at %s yet", client, ip)
		}
		return nil
	})

	r := testenv.Run(t, s.Bin(), "vm", "migrate", "mig1", "--to", target, "-n", ns, "--data-dir", s.DataDir(), "--wait", "5m")
	if r.Err != nil {
		t.Fatalf("strata vm migrate: %s\nmigrations:\n%s", r, s.Kubectl("get", "vmim", "-n", ns, "-o", "yaml").Stdout)
	}
	t.Logf("strata vm migrate:\n%s", r.Stdout)
	if !strings.Contains(r.Stdout, "moved from "+source+" to "+target) {
		t.Errorf("strata vm migrate does not report the move:\n%s", r.Stdout)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if got := vmField(s, ns, "mig1", "{.status.nodeName} {.status.ips[0]} {.status.phase}"); got != target+" "+ip+" Running" {
			return fmt.Errorf("after the migration the VM is %q, want %q", got, target+" "+ip+" Running")
		}
		return nil
	})
	table := s.MustKubectl("get", "vmim", "-n", ns, "-o", "wide")
	if !strings.Contains(table, "Succeeded") || !strings.Contains(table, "DOWNTIME(MS)") {
		t.Errorf("kubectl get vmim:\n%s", table)
	}
	// A few more seconds of pings on the new node, then the longest outage.
	time.Sleep(3 * time.Second)
	pings := s.Kubectl("logs", "-n", ns, "pinger").Stdout
	outage, tries := longestOutage(pings)
	t.Logf("longest time without an answer from the VM during the migration: %s (%d tries)", outage.Round(10*time.Millisecond), tries)
	if outage > 10*time.Second {
		t.Errorf("the VM did not answer for %s while it moved (want a few seconds at most); the pinger's log (uptime, result):\n%s", outage, lastBytes(pings, 3000))
	}
	if got := strings.TrimSpace(execIn(t, s, ns, "pinger", "pinger", "timeout", "5", "wget", "-qO-", "http://"+ip+"/").Stdout); got != "strata test vm" {
		t.Errorf("after the migration, GET http://%s/ from %s = %q", ip, client, got)
	}

	// A migration that cannot happen fails and leaves the VM where it is.
	r = testenv.Run(t, s.Bin(), "vm", "migrate", "mig1", "--to", "no-such-node", "-n", ns, "--data-dir", s.DataDir(), "--wait", "1m")
	if r.Err == nil || !strings.Contains(r.Stderr+r.Stdout, "no-such-node") {
		t.Errorf("a migration to a missing node: %s", r)
	}
	if got := vmField(s, ns, "mig1", "{.status.nodeName} {.status.phase}"); got != target+" Running" {
		t.Errorf("after a failed migration the VM is %q, want it still Running on %s", got, target)
	}

	// Restarted on its new node, it boots from the disk that moved with it,
	// and keeps its address.
	if r := testenv.Run(t, s.Bin(), "vm", "restart", "mig1", "-n", ns, "--data-dir", s.DataDir(), "--wait", "4m"); r.Err != nil {
		t.Fatalf("strata vm restart after the migration: %s", r)
	}
	waitGuest("vm-mig1")
	logs := s.Kubectl("logs", "-n", ns, "vm-mig1").Stdout
	if !strings.Contains(logs, "strata-e2e: disk says [written-by-boot1]") {
		t.Errorf("after the migration and a restart the disk lost what the first boot wrote:\n%s", lastBytes(logs, 2048))
	}
	if got := vmField(s, ns, "mig1", "{.status.nodeName} {.status.ips[0]}"); got != target+" "+ip {
		t.Errorf("after a restart on its new node the VM is %q, want %q", got, target+" "+ip)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		got := strings.TrimSpace(execIn(t, s, ns, "pinger", "pinger", "timeout", "5", "wget", "-qO-", "http://"+ip+"/").Stdout)
		if got != "strata test vm" {
			return fmt.Errorf("after the restart, GET http://%s/ from %s = %q", ip, client, got)
		}
		return nil
	})
	s.MustKubectl("delete", "vm", "mig1", "-n", ns, "--timeout=3m")
}
