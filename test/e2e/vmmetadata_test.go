package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// metadataUserData runs at boot, before the guest has its DHCP lease: in
// the background it waits for the metadata service and prints what it
// says on the console.
const metadataUserData = `#!/bin/sh
(
for i in $(seq 90); do
	if timeout 10 wget -q -O /tmp/os.json http://169.254.169.254/openstack/latest/meta_data.json &&
		timeout 10 wget -q -O /tmp/hostname http://169.254.169.254/latest/meta-data/hostname &&
		timeout 10 wget -q -O /tmp/key http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key; then
		echo "strata-e2e: metadata openstack $(cat /tmp/os.json)"
		echo "strata-e2e: metadata ec2 hostname [$(cat /tmp/hostname)]"
		echo "strata-e2e: metadata ec2 key [$(cat /tmp/key)]"
		exit 0
	fi
	sleep 2
done
echo "strata-e2e: metadata service unreachable"
) &
`

// metadataKey is the key pair the VM is given (a valid OpenSSH key: the
// metadata service serves it as is).
const metadataKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwWwXLU749vZe9cnKL9w59yN2Wpu0XPjiN4Anfk4Lti e2e@strata"

// vmReadsMetadata boots the test image with user data that reads the
// metadata service at 169.254.169.254 (OpenStack meta_data.json, the EC2
// hostname and key) and checks what the guest printed: its own UID, name
// and key pair.
func vmReadsMetadata(t *testing.T, s *testenv.Server, ns string) {
	uploadTestVMImage(t, s, ns, "vmmeta")
	fl := "e2e-meta-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 1, ramMiB: 192, diskGiB: 1}`), "create", "-f", "-")
	s.MustKubectlStdin("apiVersion: compute.strata.io/v1alpha1\nkind: KeyPair\nmetadata: {name: metakey}\nspec: {publicKey: \""+metadataKey+"\"}\n", "create", "-n", ns, "-f", "-")
	userData := "    " + strings.ReplaceAll(strings.TrimSuffix(metadataUserData, "\n"), "\n", "\n    ") + "\n"
	manifest := fmt.Sprintf("apiVersion: compute.strata.io/v1alpha1\nkind: VirtualMachine\nmetadata: {name: vmmeta}\nspec:\n  flavor: %s\n  image: vmmeta\n  keyPairs: [metakey]\n  userData: |\n%s", fl, userData)
	s.MustKubectlStdin(manifest, "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vm", "vmmeta", "-n", ns, "--ignore-not-found", "--timeout=3m") })

	began := time.Now()
	var logs string
	testenv.Eventually(t, 4*time.Minute, func() error {
		logs = s.Kubectl("logs", "-n", ns, "vm-vmmeta").Stdout
		if strings.Contains(logs, "strata-e2e: metadata service unreachable") {
			return nil // fails below, with the log
		}
		if !strings.Contains(logs, "strata-e2e: metadata ec2 key") {
			return fmt.Errorf("the guest has not printed its metadata yet; kubectl logs vm-vmmeta:\n%s", lastBytes(logs, 2048))
		}
		return nil
	})
	t.Logf("the guest printed its metadata %s after the VM was created", time.Since(began).Round(time.Second))
	uid := s.MustKubectl("get", "vm", "vmmeta", "-n", ns, "-o", "jsonpath={.metadata.uid}")
	ip := vmField(s, ns, "vmmeta", "{.status.ips[0]}")
	for _, want := range []string{
		`strata-e2e: metadata openstack {"uuid":"` + uid + `","name":"vmmeta","hostname":"vmmeta",`,
		`"availability_zone":"nova"`,
		`"public_keys":{"key-0":"` + metadataKey + `"}`,
		"strata-e2e: metadata ec2 hostname [vmmeta]",
		"strata-e2e: metadata ec2 key [" + metadataKey + "]",
		// The launcher's log of the guest's requests, from its own address.
		"GET /openstack/latest/meta_data.json from " + ip + ":",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the VM's log lacks %q:\n%s", want, lastBytes(logs, 4096))
		}
	}
}
