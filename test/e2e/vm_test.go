package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/strata-cloud/strata/internal/testenv"
)

// The VM control-plane tests run on the shared server, which has no node:
// they check the API (validation, printer columns) and the controller's
// launcher pod and status, not a running guest.

func vmManifest(name, spec string) string {
	return fmt.Sprintf("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: %s, labels: {app: web}}\nspec: %s\n", name, spec)
}

// vmField is a jsonpath over a VM, "" while it cannot be read.
func vmField(s *testenv.Server, ns, name, template string) string {
	return s.Kubectl("get", "vm", name, "-n", ns, "-o", "jsonpath="+template).Stdout
}

func TestVirtualMachineLauncherPod(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	fl := "e2e-vm-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 2, ramMiB: 256, diskGiB: 1}`), "create", "-f", "-")
	// A small raw disk, uploaded as the Image "debian".
	disk := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{0}, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	up := testenv.Run(t, s.Bin(), "image", "upload", "debian", disk, "-n", ns, "--data-dir", s.DataDir())
	if up.Err != nil || !strings.Contains(up.Stdout, "is Active") || !strings.Contains(up.Stdout, "uploading: 100%") {
		t.Fatalf("strata image upload: %s", up)
	}
	sum := sha256.Sum256(bytes.Repeat([]byte{0}, 1<<20))
	if got, want := vmImageField(s, ns, "debian", "{.status.phase} {.status.format} {.status.sizeBytes} {.status.checksum}"), "Active raw 1048576 "+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("image status %q, want %q", got, want)
	}
	ref := vmImageField(s, ns, "debian", "{.status.reference}")
	if !strings.Contains(ref, "@sha256:") {
		t.Errorf("image reference %q, want a digest reference", ref)
	}
	s.MustKubectlStdin(vmManifest("web1", `{flavor: `+fl+`, image: debian}`), "create", "-n", ns, "-f", "-")

	// The controller makes a launcher pod owned by the VM, sized by the flavor.
	testenv.Eventually(t, 30*time.Second, func() error {
		r := s.Kubectl("get", "pod", "vm-web1", "-n", ns, "-o", `jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name} {.metadata.labels.app} {.spec.containers[0].resources.limits.memory}`)
		if r.Err != nil {
			return fmt.Errorf("launcher pod: %s", r)
		}
		if got, want := r.Stdout, "VirtualMachine/web1 web 384Mi"; got != want {
			return fmt.Errorf("launcher pod owner, labels, memory = %q, want %q", got, want)
		}
		return nil
	})
	// No node in this cluster: the VM waits for one, and says so.
	testenv.Eventually(t, 30*time.Second, func() error {
		phase := vmField(s, ns, "web1", "{.status.phase} {.status.launcherPod} {.status.vcpus}")
		if phase != "Pending vm-web1 2" {
			return fmt.Errorf("status = %q, want Pending vm-web1 2", phase)
		}
		return nil
	})
	table := s.MustKubectl("get", "vm", "-n", ns)
	for _, h := range []string{"PHASE", "FLAVOR", "IMAGE", "IP", "NODE", "AGE"} {
		if !strings.Contains(table, h) {
			t.Errorf("kubectl get vm lacks column %s:\n%s", h, table)
		}
	}
	if got := column(t, table, "web1", "PHASE"); got != "Pending" {
		t.Errorf("PHASE of web1 = %q, want Pending:\n%s", got, table)
	}

	// Halted stops it: the pod goes.
	s.MustKubectl("patch", "vm", "web1", "-n", ns, "--type=merge", "-p", `{"spec":{"runStrategy":"Halted"}}`)
	testenv.Eventually(t, 60*time.Second, func() error {
		if r := s.Kubectl("get", "pod", "vm-web1", "-n", ns); !isNotFound(r) {
			return fmt.Errorf("launcher pod still there after Halted: %s", r)
		}
		if phase := vmField(s, ns, "web1", "{.status.phase}"); phase != "Stopped" {
			return fmt.Errorf("phase %q after Halted, want Stopped", phase)
		}
		return nil
	})

	// A missing flavor is an error in status, with no pod.
	s.MustKubectlStdin(vmManifest("orphan", `{flavor: no-such-flavor, image: debian}`), "create", "-n", ns, "-f", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		got := vmField(s, ns, "orphan", `{.status.phase} {.status.conditions[?(@.type=="Ready")].reason}`)
		if got != "Error FlavorNotFound" {
			return fmt.Errorf("status of a VM with a missing flavor = %q, want Error FlavorNotFound", got)
		}
		return nil
	})
	requireNotFound(t, s, "pod", "vm-orphan", "-n", ns)
	if got := s.MustKubectl("get", "pod", "vm-web1", "-n", ns, "--ignore-not-found", "-o", "jsonpath={.spec.volumes[0].image.reference}"); got != "" && got != ref {
		t.Errorf("launcher pod boots %q, want the image artifact %q", got, ref)
	}
	// A missing image is an error in status, naming what to do.
	s.MustKubectlStdin(vmManifest("noimage", `{flavor: `+fl+`, image: nope}`), "create", "-n", ns, "-f", "-")
	testenv.Eventually(t, 30*time.Second, func() error {
		got := vmField(s, ns, "noimage", `{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}`)
		if !strings.HasPrefix(got, "ImageNotFound: ") || !strings.Contains(got, "strata image upload") {
			return fmt.Errorf("status of a VM with a missing image = %q", got)
		}
		return nil
	})
}

func vmImageField(s *testenv.Server, ns, name, template string) string {
	return s.Kubectl("get", "images.storage.strata.io", name, "-n", ns, "-o", "jsonpath="+template).Stdout
}

func TestVirtualMachineValidation(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	for _, c := range []struct{ name, spec, want string }{
		{"both", `{flavor: m1, resources: {vcpus: 1, memoryMiB: 64}, image: debian}`, "set exactly one of flavor and resources"},
		{"neither", `{image: debian}`, "set exactly one of flavor and resources"},
		{"noimage", `{flavor: m1}`, "set exactly one of image and rootVolume"},
		{"badstrategy", `{flavor: m1, image: debian, runStrategy: Sometimes}`, `spec.runStrategy: Unsupported value: "Sometimes"`},
		{"tinymem", `{resources: {vcpus: 1, memoryMiB: 1}, image: debian}`, "spec.resources.memoryMiB: Invalid value"},
	} {
		r := s.KubectlStdin(vmManifest("bad-"+c.name, c.spec), "create", "-n", ns, "-f", "-")
		if r.Err == nil || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: %s\nwant a rejection containing %q", c.name, r, c.want)
		}
	}
	// The image is the root disk's base: it cannot change.
	s.MustKubectlStdin(vmManifest("fixed", `{resources: {vcpus: 1, memoryMiB: 64}, image: debian, runStrategy: Halted}`), "create", "-n", ns, "-f", "-")
	r := s.Kubectl("patch", "vm", "fixed", "-n", ns, "--type=merge", "-p", `{"spec":{"image":"ubuntu"}}`)
	if r.Err == nil || !strings.Contains(r.Stderr, "image cannot change") {
		t.Errorf("changing a VM's image: %s, want a rejection", r)
	}
	// Key pairs hold OpenSSH public keys only.
	kp := "apiVersion: compute.strata.io/v1alpha1\nkind: KeyPair\nmetadata: {name: k1}\nspec: {publicKey: \"not a key at all\"}\n"
	if r := s.KubectlStdin(kp, "create", "-n", ns, "-f", "-"); r.Err == nil || !strings.Contains(r.Stderr, "spec.publicKey") {
		t.Errorf("a key pair with a bad key: %s, want a rejection naming spec.publicKey", r)
	}
}

func TestKeyPairs(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	r := testenv.Run(t, s.Bin(), "keypair", "create", "k1", "-n", ns, "--data-dir", s.DataDir())
	if r.Err != nil {
		t.Fatalf("strata keypair create: %s", r)
	}
	signer, err := ssh.ParsePrivateKey([]byte(r.Stdout))
	if err != nil {
		t.Fatalf("printed private key does not parse: %v\n%s", err, r)
	}
	want := ssh.FingerprintLegacyMD5(signer.PublicKey())
	testenv.Eventually(t, 30*time.Second, func() error {
		got := s.Kubectl("get", "kp", "k1", "-n", ns, "-o", "jsonpath={.status.fingerprint} {.status.type}").Stdout
		if got != want+" ssh" {
			return fmt.Errorf("key pair status %q, want %q", got, want+" ssh")
		}
		return nil
	})
	if table := s.MustKubectl("get", "keypairs", "-n", ns); !strings.Contains(table, "FINGERPRINT") || !strings.Contains(table, want) {
		t.Errorf("kubectl get keypairs:\n%s", table)
	}
	if r := testenv.Run(t, s.Bin(), "keypair", "create", "k1", "-n", ns, "--data-dir", s.DataDir()); r.Err == nil || !strings.Contains(r.Stderr, "already exists") {
		t.Errorf("creating k1 twice: %s", r)
	}
}
