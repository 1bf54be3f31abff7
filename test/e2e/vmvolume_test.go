package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// vmVolumesUserData prints the guest's virtio disks (name=serial) on the
// console whenever they change: the test watches volumes come and go.
const vmVolumesUserData = `#!/bin/sh
(
last=""
while :; do
	cur=""
	for d in /sys/block/vd*; do
		[ -e "$d" ] || continue
		cur="$cur ${d##*/}=$(cat "$d/serial" 2>/dev/null)"
	done
	if [ "$cur" != "$last" ]; then echo "strata-e2e: disks$cur"; last="$cur"; fi
	sleep 1
done
) &
`

// vmVolumes attaches Volumes to a VM on the node: one at create (the guest
// sees it as vdc: vda is the root disk, vdb the cloud-init seed), a second
// hot-plugged while it runs (vdd) and unplugged again; the Volume lists the
// VM as attached and cannot be deleted (409); and a VM boots from a Volume
// made from an Image (rootVolume).
func vmVolumes(t *testing.T, s *testenv.Server, ns string) {
	volume := func(name, extra string) string {
		return fmt.Sprintf("apiVersion: storage.strata.io/v1alpha1\nkind: Volume\nmetadata: {name: %s}\nspec: {size: 64Mi%s}\n", name, extra)
	}
	for _, v := range []string{"vmvol-a", "vmvol-b"} {
		s.MustKubectlStdin(volume(v, ""), "create", "-n", ns, "-f", "-")
		t.Cleanup(func() { s.Kubectl("delete", "volume", v, "-n", ns, "--ignore-not-found", "--timeout=2m") })
	}
	uploadTestVMImage(t, s, ns, "vmvol-img")
	userData := "    " + strings.ReplaceAll(strings.TrimSuffix(vmVolumesUserData, "\n"), "\n", "\n    ") + "\n"
	manifest := "apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vmvol}\nspec:\n" +
		"  resources: {vcpus: 1, memoryMiB: 192}\n  image: vmvol-img\n  volumes: [{volume: vmvol-a}]\n  userData: |\n" + userData
	s.MustKubectlStdin(manifest, "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vm", "vmvol", "-n", ns, "--ignore-not-found", "--timeout=3m") })

	// waitLog waits for a console line of disks that has want (and, if
	// given, lacks notWant).
	waitLog := func(what, want, notWant string) {
		t.Helper()
		testenv.Eventually(t, 4*time.Minute, func() error {
			logs := s.Kubectl("logs", "-n", ns, "vm-vmvol").Stdout
			lines := strings.Split(logs, "\n")
			for i := len(lines) - 1; i >= 0; i-- {
				if l := lines[i]; strings.Contains(l, "strata-e2e: disks") {
					if strings.Contains(l, want) && (notWant == "" || !strings.Contains(l, notWant)) {
						t.Logf("%s: %s", what, strings.TrimSpace(l))
						return nil
					}
					return fmt.Errorf("%s: the guest's last disk list is %q; kubectl logs vm-vmvol:\n%s", what, l, lastBytes(logs, 2048))
				}
			}
			return fmt.Errorf("%s: the guest has not listed its disks yet; kubectl logs vm-vmvol:\n%s", what, lastBytes(logs, 2048))
		})
	}
	waitStatus := func(jsonpath, want string) {
		t.Helper()
		testenv.Eventually(t, 2*time.Minute, func() error {
			if got := vmField(s, ns, "vmvol", jsonpath); got != want {
				return fmt.Errorf("vm vmvol %s = %q, want %q (volumes: %s)", jsonpath, got, want, vmField(s, ns, "vmvol", "{.status.volumes}"))
			}
			return nil
		})
	}

	// At create.
	waitLog("attached at create", "vdc=vmvol-a", "")
	waitStatus("{.status.volumes[?(@.volume=='vmvol-a')].phase}", "Attached")
	waitStatus("{.status.volumes[?(@.volume=='vmvol-a')].target}", "vdc")
	testenv.Eventually(t, time.Minute, func() error {
		got := s.MustKubectl("get", "volume", "vmvol-a", "-n", ns, "-o", "jsonpath={.status.attachments[0].kind}/{.status.attachments[0].name}/{.status.attachments[0].device} {.status.phase}")
		if got != "VirtualMachine/vmvol//dev/vdc In-use" {
			return fmt.Errorf("volume vmvol-a attachments/phase: %q", got)
		}
		return nil
	})
	r := s.Kubectl("delete", "volume", "vmvol-a", "-n", ns)
	if r.Err == nil || !strings.Contains(r.Stderr, "attached to virtualmachine vmvol") {
		t.Errorf("deleting an attached volume: want 409 naming the VM, got %s", r)
	}

	// Hot-plug.
	began := time.Now()
	s.MustKubectl("patch", "vm", "vmvol", "-n", ns, "--type=merge", "-p", `{"spec":{"volumes":[{"volume":"vmvol-a"},{"volume":"vmvol-b"}]}}`)
	waitLog("hot-plugged", "vdd=vmvol-b", "")
	t.Logf("the guest saw the hot-plugged volume %s after the patch", time.Since(began).Round(time.Second))
	waitStatus("{.status.volumes[?(@.volume=='vmvol-b')].phase}", "Attached")
	waitStatus("{.status.volumes[?(@.volume=='vmvol-b')].target}", "vdd")

	// Unplug.
	began = time.Now()
	s.MustKubectl("patch", "vm", "vmvol", "-n", ns, "--type=merge", "-p", `{"spec":{"volumes":[{"volume":"vmvol-a"}]}}`)
	waitLog("unplugged", "vdc=vmvol-a", "vmvol-b")
	waitStatus("{.status.volumes[*].volume}", "vmvol-a")
	t.Logf("the volume was unplugged %s after the patch", time.Since(began).Round(time.Second))
	testenv.Eventually(t, time.Minute, func() error {
		if got := s.MustKubectl("get", "volume", "vmvol-b", "-n", ns, "-o", "jsonpath={.status.attachments}"); got != "" && got != "[]" {
			return fmt.Errorf("volume vmvol-b still has attachments %s", got)
		}
		return nil
	})
	if r := s.Kubectl("delete", "volume", "vmvol-b", "-n", ns, "--timeout=2m"); r.Err != nil {
		t.Errorf("deleting the detached volume: %s", r)
	}

	// Boot from a volume made from the image.
	s.MustKubectlStdin(strings.Replace(volume("vmvol-root", ", source: {image: vmvol-img}"), "64Mi", "256Mi", 1), "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "volume", "vmvol-root", "-n", ns, "--ignore-not-found", "--timeout=2m") })
	s.MustKubectlStdin("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vmvol-boot}\nspec:\n  resources: {vcpus: 1, memoryMiB: 192}\n  rootVolume: vmvol-root\n", "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vm", "vmvol-boot", "-n", ns, "--ignore-not-found", "--timeout=3m") })
	testenv.Eventually(t, 4*time.Minute, func() error {
		logs := s.Kubectl("logs", "-n", ns, "vm-vmvol-boot").Stdout
		if !strings.Contains(logs, testimage.Marker) {
			return fmt.Errorf("the VM booted from volume vmvol-root has not printed %s; phase %s; kubectl logs vm-vmvol-boot:\n%s",
				testimage.Marker, vmField(s, ns, "vmvol-boot", "{.status.phase} {.status.conditions}"), lastBytes(logs, 2048))
		}
		return nil
	})
	if got := s.MustKubectl("get", "volume", "vmvol-root", "-n", ns, "-o", "jsonpath={.status.attachments[0].name}{.status.attachments[0].device}"); got != "vmvol-boot/dev/vda" {
		t.Errorf("root volume attachments: %q", got)
	}
}
