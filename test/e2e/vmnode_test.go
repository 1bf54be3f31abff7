package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// vmUserData runs at every boot of the test image: it reports what the
// root disk holds 512 MiB in (beyond the boot filesystem) and writes a
// marker there on the first boot, so a later boot proves the disk was kept.
const vmUserData = `#!/bin/sh
old=$(dd if=/dev/vda bs=1M skip=512 count=1 2>/dev/null | head -c 16 | tr -d '\000')
echo "strata-e2e: disk says [$old]"
if [ "$old" != "written-by-boot1" ]; then
	printf written-by-boot1 | dd of=/dev/vda bs=1M seek=512 conv=notrunc 2>/dev/null
	sync
	echo "strata-e2e: wrote the disk marker"
fi
`

const vmWebService = `
apiVersion: v1
kind: Service
metadata: {name: vmweb}
spec:
  selector: {app: vmweb}
  ports: [{port: 80}]
`

// uploadTestVMImage builds the bootable test image and uploads it as the
// Image name in ns.
func uploadTestVMImage(t *testing.T, s *testenv.Server, ns, name string) {
	t.Helper()
	dir := t.TempDir()
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		t.Fatalf("test VM image: %v (hack/install-deps.sh installs the kernel and busybox)", err)
	}
	disk, err := testimage.BootDisk(dir, img)
	if err != nil {
		t.Fatal(err)
	}
	if r := testenv.Run(t, s.Bin(), "image", "upload", name, disk, "-n", ns, "--data-dir", s.DataDir()); r.Err != nil {
		t.Fatalf("strata image upload: %s", r)
	}
}

// vmOnNode boots a VM on the node and checks its console, its network (its
// own address, a Service selecting it, DNS), the lifecycle actions (stop,
// start, restart keep the IP and the disk) and disk cleanup on delete. A
// busybox pod named client in ns runs the network checks.
func vmOnNode(t *testing.T, s *testenv.Server, ns, client string) {
	uploadTestVMImage(t, s, ns, "testvm")
	fl := "e2e-boot-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 1, ramMiB: 256, diskGiB: 1}`), "create", "-f", "-")
	s.MustKubectlStdin(vmWebService, "apply", "-n", ns, "-f", "-")
	manifest := fmt.Sprintf("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vm1, labels: {app: vmweb}}\nspec:\n  flavor: %s\n  image: testvm\n  userData: |\n%s",
		fl, "    "+strings.ReplaceAll(strings.TrimSuffix(vmUserData, "\n"), "\n", "\n    ")+"\n")
	s.MustKubectlStdin(manifest, "create", "-n", ns, "-f", "-")

	began := time.Now()
	// waitBoot waits for the VM to run and its console to show the test
	// image's marker and its DHCP lease; it returns the console.
	waitBoot := func(what string) string {
		var logs string
		// TCG on a loaded 2-core machine: allow a slow boot.
		testenv.Eventually(t, 3*time.Minute, func() error {
			phase := vmField(s, ns, "vm1", `{.status.phase} {.status.conditions[?(@.type=="Ready")].message}`)
			if !strings.HasPrefix(phase, "Running") {
				return fmt.Errorf("%s: VM phase %q", what, phase)
			}
			r := s.Kubectl("logs", "-n", ns, "vm-vm1")
			logs = r.Stdout
			if !strings.Contains(logs, testimage.Marker) || !strings.Contains(logs, "strata-testimage: eth0") {
				return fmt.Errorf("%s: no boot marker and DHCP lease on the VM console yet; kubectl logs vm-vm1:\n%s", what, lastBytes(logs, 2048))
			}
			return nil
		})
		return logs
	}
	logs := waitBoot("first boot")
	t.Logf("VM Running with its console in kubectl logs %s after create", time.Since(began).Round(time.Millisecond))
	table := s.MustKubectl("get", "vm", "vm1", "-n", ns)
	if node := column(t, table, "vm1", "NODE"); node == "" || node == "<none>" {
		t.Errorf("kubectl get vm shows no node:\n%s", table)
	}
	if !strings.Contains(logs, "accelerator") {
		t.Errorf("launcher log does not say which accelerator runs the VM:\n%s", lastBytes(logs, 2048))
	}
	ip := vmField(s, ns, "vm1", "{.status.ips[0]}")
	if got := column(t, table, "vm1", "IP"); got != ip || ip == "" {
		t.Errorf("kubectl get vm IP %q, status %q", got, ip)
	}
	// The guest, not the pod, holds the address: it got it by DHCP.
	if !strings.Contains(logs, "strata-testimage: eth0 "+ip+"/") {
		t.Errorf("the guest did not get the VM's IP %s by DHCP:\n%s", ip, lastBytes(logs, 3072))
	}
	if !strings.Contains(logs, "strata-e2e: wrote the disk marker") {
		t.Errorf("user-data did not run on the first boot:\n%s", lastBytes(logs, 3072))
	}

	// From a pod: the VM's IP, the Service selecting it by label, by DNS name.
	get := func(url string) error {
		return testenv.EventuallyErr(60*time.Second, func() error {
			r := execIn(t, s, ns, client, client, "timeout", "10", "wget", "-qO-", url)
			if r.Err != nil {
				return fmt.Errorf("wget %s from pod %s: %s", url, client, r)
			}
			if got := strings.TrimSpace(r.Stdout); got != "strata test vm" {
				return fmt.Errorf("GET %s = %q, want the test VM's page", url, got)
			}
			return nil
		})
	}
	// ... and by the VM's own DNS name.
	for _, url := range []string{"http://" + ip + "/", "http://vmweb/", "http://vmweb." + ns + ".svc.cluster.local/", "http://vm1." + ns + ".vm.cluster.local/"} {
		if err := get(url); err != nil {
			t.Error(err)
		}
	}
	// NetworkPolicy isolates a VM as it does a pod: its launcher pod
	// carries the VM's labels, and the guest holds the pod's address.
	s.MustKubectlStdin("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: vm-deny-ingress}\nspec:\n  podSelector: {matchLabels: {app: vmweb}}\n  policyTypes: [Ingress]\n", "apply", "-n", ns, "-f", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		if r := execIn(t, s, ns, client, client, "timeout", "3", "wget", "-qO-", "http://"+ip+"/"); r.Err == nil {
			return fmt.Errorf("GET http://%s/ passed a deny-all-ingress NetworkPolicy on the VM: %q", ip, r.Stdout)
		}
		return nil
	})
	s.MustKubectl("delete", "networkpolicy", "vm-deny-ingress", "-n", ns)
	if err := get("http://" + ip + "/"); err != nil {
		t.Errorf("after the NetworkPolicy went: %v", err)
	}
	// A VM larger than any node waits, saying why, and leaves nothing behind.
	s.MustKubectlStdin("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: huge}\nspec: {resources: {vcpus: 1, memoryMiB: 10000000}, image: testvm}\n", "create", "-n", ns, "-f", "-")
	testenv.Eventually(t, 60*time.Second, func() error {
		got := vmField(s, ns, "huge", `{.status.phase} {.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}`)
		if !strings.HasPrefix(got, "Pending Unschedulable: no node can run this VM now: ") || !strings.Contains(got, "Insufficient memory") {
			return fmt.Errorf("status of a VM larger than the node = %q, want Pending, Unschedulable, Insufficient memory", got)
		}
		return nil
	})
	s.MustKubectl("delete", "vm", "huge", "-n", ns, "--timeout=60s")
	requireNotFound(t, s, "pod", "vm-huge", "-n", ns)

	uid := s.MustKubectl("get", "vm", "vm1", "-n", ns, "-o", "jsonpath={.metadata.uid}")
	node := vmField(s, ns, "vm1", "{.status.nodeName}")

	// stop, start: same IP, same disk.
	vm := func(action string) string {
		r := testenv.Run(t, s.Bin(), "vm", action, "vm1", "-n", ns, "--data-dir", s.DataDir(), "--wait", "4m")
		if r.Err != nil {
			t.Fatalf("strata vm %s: %s", action, r)
		}
		return r.Stdout
	}
	out := vm("stop")
	if !strings.Contains(out, "virtualmachine.compute.strata.io/vm1 stopping") || !strings.Contains(out, "vm1: Stopped") {
		t.Errorf("strata vm stop printed:\n%s", out)
	}
	// Stopped once the guest is off; the pod object goes a moment later.
	testenv.Eventually(t, 60*time.Second, func() error {
		if r := s.Kubectl("get", "pod", "vm-vm1", "-n", ns); !isNotFound(r) {
			return fmt.Errorf("the launcher pod of a stopped VM is still there: %s", r)
		}
		return nil
	})
	if got := vmField(s, ns, "vm1", "{.status.ips[0]} {.status.nodeName}"); got != ip+" "+node {
		t.Errorf("a stopped VM shows IP and node %q, want %q (it keeps both)", got, ip+" "+node)
	}
	vm("start")
	logs = waitBoot("after stop and start")
	if got := vmField(s, ns, "vm1", "{.status.ips[0]}"); got != ip {
		t.Errorf("IP after stop and start = %q, want %q", got, ip)
	}
	if !strings.Contains(logs, "strata-e2e: disk says [written-by-boot1]") {
		t.Errorf("the root disk lost what the first boot wrote:\n%s", lastBytes(logs, 3072))
	}
	if err := get("http://" + ip + "/"); err != nil {
		t.Errorf("after stop and start: %v", err)
	}
	pod1 := s.MustKubectl("get", "pod", "vm-vm1", "-n", ns, "-o", "jsonpath={.metadata.uid}")
	vm("restart")
	if pod2 := s.MustKubectl("get", "pod", "vm-vm1", "-n", ns, "-o", "jsonpath={.metadata.uid}"); pod2 == pod1 {
		t.Errorf("strata vm restart kept launcher pod %s", pod1)
	}
	logs = waitBoot("after restart")
	if got := vmField(s, ns, "vm1", "{.status.ips[0]}"); got != ip {
		t.Errorf("IP after restart = %q, want %q", got, ip)
	}
	if !strings.Contains(logs, "strata-e2e: disk says [written-by-boot1]") {
		t.Errorf("the root disk lost what the first boot wrote, after restart:\n%s", lastBytes(logs, 3072))
	}
	for _, url := range []string{"http://" + ip + "/", "http://vmweb/"} {
		if err := get(url); err != nil {
			t.Errorf("after restart: %v\nEndpointSlices:\n%s", err, s.Kubectl("get", "endpointslices", "-n", ns, "-l", "kubernetes.io/service-name=vmweb", "-o", "yaml").Stdout)
		}
	}

	// Deleting the VM removes its disks from the node.
	disks := filepath.Join(s.DataDir(), "vm-disks", node, ns, "vm1-"+uid)
	if _, err := os.Stat(filepath.Join(disks, "root.qcow2")); err != nil {
		t.Errorf("the VM's root disk is not where the server keeps VM disks: %v", err)
	}
	s.MustKubectl("delete", "vm", "vm1", "-n", ns, "--timeout=3m")
	if _, err := os.Stat(disks); !os.IsNotExist(err) {
		t.Errorf("after kubectl delete vm, its disks are still at %s (%v)", disks, err)
	}
}
