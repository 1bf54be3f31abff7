package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// extIface is the interface the OpenStack step's external network sits
// on, one end of a veth pair (this kernel has no dummy links): the
// router's macvlan and its gratuitous ARPs stay on it, off the host's
// real network.
const extIface = "e2e-ext"

// osServerTimeout bounds `openstack server create --wait` (a TCG boot on
// a tenant network) and the other waits on a server.
const osServerTimeout = 3 * time.Minute

// asUser is env (an openrc) for another user and project.
func asUser(env map[string]string, user, password, project string) map[string]string {
	out := map[string]string{}
	for k, v := range env {
		out[k] = v
	}
	out["OS_USERNAME"], out["OS_PASSWORD"], out["OS_PROJECT_NAME"] = user, password, project
	return out
}

// showField is `openstack TYPE show NAME -f value -c FIELD`.
func showField(t *testing.T, env map[string]string, kind, name, field string) string {
	t.Helper()
	return strings.TrimSpace(mustOpenstack(t, env, append(strings.Fields(kind), "show", name, "-f", "value", "-c", field)...))
}

// waitServerStatus waits until `openstack server show` says status.
func waitServerStatus(t *testing.T, env map[string]string, name, status string) {
	t.Helper()
	testenv.Eventually(t, osServerTimeout, func() error {
		if got := showField(t, env, "server", name, "status"); got != status {
			return fmt.Errorf("server %s is %s, want %s", name, got, status)
		}
		return nil
	})
}

// waitVolumeStatus waits until `openstack volume show` says status.
func waitVolumeStatus(t *testing.T, env map[string]string, name, status string) {
	t.Helper()
	testenv.Eventually(t, osServerTimeout, func() error {
		if got := showField(t, env, "volume", name, "status"); got != status {
			return fmt.Errorf("volume %s is %s, want %s", name, got, status)
		}
		return nil
	})
}

// openStackCompute drives the OpenStack face of the node with the real
// openstack CLI, as a new project's member would from `strata openrc`:
// Glance, Nova and Neutron, each result checked through kubectl, and
// another project's member kept out.
func openStackCompute(t *testing.T, s *testenv.Server) {
	requireOpenstackCLI(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	project, user, other := "osc-"+suffix, "osu-"+suffix, "osx-"+suffix

	// The project, its member, and a second project's member.
	mustOpenstack(t, admin, "project", "create", project)
	mustOpenstack(t, admin, "project", "create", other)
	t.Cleanup(func() {
		runOpenstack(t, admin, "project", "delete", project)
		runOpenstack(t, admin, "project", "delete", other)
	})
	for _, u := range [][2]string{{user, project}, {user + "-x", other}} {
		mustOpenstack(t, admin, "user", "create", "--password", "pw", u[0])
		t.Cleanup(func() { runOpenstack(t, admin, "user", "delete", u[0]) })
		mustOpenstack(t, admin, "role", "add", "--project", u[1], "--user", u[0], "member")
	}
	member := asUser(admin, user, "pw", project)
	outsider := asUser(admin, user+"-x", "pw", other)
	testenv.Eventually(t, controllerTimeout, func() error {
		_, err := runOpenstack(t, member, "token", "issue")
		return err
	})

	// Glance: a qcow2 image from a file.
	dir := t.TempDir()
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		t.Fatalf("test VM image: %v (hack/install-deps.sh installs the kernel and busybox)", err)
	}
	raw, err := testimage.BootDisk(dir, img)
	if err != nil {
		t.Fatal(err)
	}
	qcow2 := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow2).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	image := "img-" + suffix
	mustOpenstack(t, member, "image", "create", "--file", qcow2, "--disk-format", "qcow2", "--container-format", "bare", image)
	testenv.Eventually(t, controllerTimeout, func() error {
		if got := showField(t, member, "image", image, "status"); got != "active" {
			return fmt.Errorf("image %s is %s", image, got)
		}
		return nil
	})
	if got := s.MustKubectl("get", "vmimage", image, "-n", project, "-o", "jsonpath={.status.phase} {.status.format}"); got != "Active qcow2" {
		t.Errorf("kubectl get vmimage %s = %q, want Active qcow2", image, got)
	}

	// Nova's flavor (the admin's) and key pair (the member's).
	flavor := "fl-" + suffix
	mustOpenstack(t, admin, "flavor", "create", "--vcpus", "1", "--ram", "96", "--disk", "1", flavor)
	t.Cleanup(func() { runOpenstack(t, admin, "flavor", "delete", flavor) })
	if got := s.MustKubectl("get", "flavor", flavor, "-o", "jsonpath={.spec.vcpus} {.spec.ramMiB}"); got != "1 96" {
		t.Errorf("kubectl get flavor %s = %q", flavor, got)
	}
	key := "kp-" + suffix
	if out := mustOpenstack(t, member, "keypair", "create", key); !strings.Contains(out, "PRIVATE KEY") {
		t.Errorf("keypair create printed no private key:\n%.300s", out)
	}
	s.MustKubectl("get", "keypair", key, "-n", project)

	// Neutron: an external network on a veth (the admin's), the
	// project's network, subnet, router and a security group rule.
	if out, err := exec.Command("ip", "link", "add", extIface, "type", "veth", "peer", "name", extIface+"-p").CombinedOutput(); err != nil && !strings.Contains(string(out), "exists") {
		t.Fatalf("ip link add %s: %v %s", extIface, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", extIface).Run() })
	for _, l := range []string{extIface, extIface + "-p"} {
		if out, err := exec.Command("ip", "link", "set", l, "up").CombinedOutput(); err != nil {
			t.Fatalf("ip link set %s up: %v %s", l, err, out)
		}
	}
	public := "pub-" + suffix
	mustOpenstack(t, admin, "network", "create", "--external", "--provider-network-type", "flat", "--provider-physical-network", extIface, public)
	t.Cleanup(func() { runOpenstack(t, admin, "network", "delete", public) })
	mustOpenstack(t, admin, "subnet", "create", "--network", public, "--subnet-range", "198.51.100.0/24", "--no-dhcp", public+"-v4")
	net, sub, router, sg := "net-"+suffix, "sub-"+suffix, "rt-"+suffix, "sg-"+suffix
	mustOpenstack(t, member, "network", "create", net)
	mustOpenstack(t, member, "subnet", "create", "--network", net, "--subnet-range", "10.20.0.0/24", sub)
	mustOpenstack(t, member, "router", "create", router)
	mustOpenstack(t, member, "router", "set", "--external-gateway", public, router)
	mustOpenstack(t, member, "router", "add", "subnet", router, sub)
	mustOpenstack(t, member, "security", "group", "create", sg)
	mustOpenstack(t, member, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", sg)
	if got := s.MustKubectl("get", "router", router, "-n", project, "-o", "jsonpath={.spec.externalGateway.network.name} {.spec.interfaces[0].subnet}"); got != public+" "+sub {
		t.Errorf("kubectl get router %s = %q", router, got)
	}

	// Nova: a server on the network, booted and ACTIVE.
	server := "srv-" + suffix
	began := time.Now()
	out := mustOpenstack(t, member, "server", "create", "--wait", "--flavor", flavor, "--image", image, "--network", net,
		"--key-name", key, "--security-group", sg, "-f", "json", server)
	t.Logf("openstack server create --wait took %s", time.Since(began).Round(time.Millisecond))
	var created map[string]any
	if err := json.Unmarshal([]byte(out), &created); err != nil || created["status"] != "ACTIVE" {
		t.Fatalf("server create: %v\n%s", err, out)
	}
	id, _ := created["id"].(string)
	if got := s.MustKubectl("get", "vm", server, "-n", project, "-o", "jsonpath={.metadata.uid} {.status.phase} {.spec.flavor} {.spec.image}"); got != id+" Running "+flavor+" "+image {
		t.Errorf("kubectl get vm %s = %q, want %s Running %s %s", server, got, id, flavor, image)
	}
	if out := mustOpenstack(t, member, "server", "list", "-f", "value", "-c", "Name", "-c", "Status", "-c", "Networks"); !strings.Contains(out, server+" ACTIVE") || !strings.Contains(out, "10.20.0.") {
		t.Errorf("server list:\n%s", out)
	}
	// The admin (another project) lists it with --all-projects, under the
	// member's project, and shows it by ID.
	if out := mustOpenstack(t, admin, "server", "list", "--all-projects", "-f", "value", "-c", "ID", "-c", "Name"); !strings.Contains(out, id+" "+server) {
		t.Errorf("admin's server list --all-projects lacks %s %s:\n%s", id, server, out)
	}
	if out := mustOpenstack(t, admin, "server", "show", id, "-f", "value", "-c", "project_id"); strings.TrimSpace(out) != project {
		t.Errorf("admin's server show %s: project_id %q, want %s", id, out, project)
	}
	if got := showField(t, member, "server", server, "key_name"); got != key {
		t.Errorf("server show key_name = %q, want %s", got, key)
	}
	testenv.Eventually(t, osServerTimeout, func() error {
		if out := mustOpenstack(t, member, "console", "log", "show", server); !strings.Contains(out, testimage.Marker) {
			return fmt.Errorf("console log lacks %s:\n%s", testimage.Marker, lastBytes(out, 600))
		}
		return nil
	})

	// Lifecycle: stop (by the admin, another project's, by ID), start, reboot.
	mustOpenstack(t, admin, "server", "stop", id)
	waitServerStatus(t, member, server, "SHUTOFF")
	if got := s.MustKubectl("get", "vm", server, "-n", project, "-o", "jsonpath={.spec.runStrategy}"); got != "Halted" {
		t.Errorf("kubectl: a stopped server's runStrategy = %q, want Halted", got)
	}
	mustOpenstack(t, member, "server", "start", server)
	waitServerStatus(t, member, server, "ACTIVE")
	mustOpenstack(t, member, "server", "reboot", "--wait", server)
	waitServerStatus(t, member, server, "ACTIVE")

	// A floating IP on the server's port.
	fip := strings.TrimSpace(mustOpenstack(t, member, "floating", "ip", "create", "-f", "value", "-c", "floating_ip_address", public))
	port := strings.TrimSpace(mustOpenstack(t, member, "port", "list", "--server", server, "-f", "value", "-c", "ID"))
	if fip == "" || port == "" {
		t.Fatalf("floating ip %q, the server's port %q", fip, port)
	}
	mustOpenstack(t, member, "floating", "ip", "set", "--port", port, fip)
	testenv.Eventually(t, controllerTimeout, func() error {
		r := s.Kubectl("get", "floatingip", "-n", project, "-o", "jsonpath={range .items[*]}{.status.floatingIPAddress} {.spec.port}{\"\\n\"}{end}")
		if !strings.Contains(r.Stdout, fip+" ") || strings.Contains(r.Stdout, fip+" \n") {
			return fmt.Errorf("kubectl get floatingip: %q %s", r.Stdout, r.Stderr)
		}
		return nil
	})

	// A VM made with kubectl is a server too.
	kubeVM := "kube-" + suffix
	s.MustKubectlStdin(vmManifest(kubeVM, "{flavor: "+flavor+", image: "+image+", runStrategy: Halted}"), "apply", "-n", project, "-f", "-")
	if out := mustOpenstack(t, member, "server", "list", "-f", "value", "-c", "Name", "-c", "Status"); !strings.Contains(out, kubeVM+" SHUTOFF") {
		t.Errorf("server list lacks the kubectl VM %s:\n%s", kubeVM, out)
	}

	// Another project's member sees none of it.
	if out, err := runOpenstack(t, outsider, "server", "show", server); err == nil || !strings.Contains(out, "No server with a name or ID") {
		t.Errorf("another project's member: server show %s: %v\n%s", server, err, out)
	}
	if out, err := runOpenstack(t, outsider, "server", "delete", id); err == nil {
		t.Errorf("another project's member deleted server %s:\n%s", id, out)
	}
	if out := mustOpenstack(t, outsider, "image", "list", "-f", "value", "-c", "Name"); strings.Contains(out, image) {
		t.Errorf("another project's member lists the private image %s:\n%s", image, out)
	}

	// Bad input: Nova's 400s name the problem.
	if out, err := runOpenstack(t, member, "server", "create", "--flavor", flavor, "--image", image, "--network", "no-such-net", "bad-"+suffix); err == nil {
		t.Errorf("server create on a missing network succeeded:\n%s", out)
	}

	// Cinder volumes on the server: attached while it runs, detached;
	// and a server booted from a volume made from the image.
	vol := "vol-" + suffix
	mustOpenstack(t, member, "volume", "create", "--size", "1", vol)
	waitVolumeStatus(t, member, vol, "available")
	mustOpenstack(t, member, "server", "add", "volume", server, vol)
	waitVolumeStatus(t, member, vol, "in-use")
	if got := s.MustKubectl("get", "vm", server, "-n", project, "-o", "jsonpath={.spec.volumes[*].volume}"); got != vol {
		t.Errorf("kubectl: the server's volumes = %q, want %s", got, vol)
	}
	// The server was created without volumes: its launcher still has the
	// node's volume directory, so the volume is hot-plugged, not refused.
	testenv.Eventually(t, 2*time.Minute, func() error {
		jp := fmt.Sprintf("jsonpath={.status.volumes[?(@.volume=='%s')].phase} {.status.volumes[?(@.volume=='%s')].message}", vol, vol)
		if got := s.MustKubectl("get", "vm", server, "-n", project, "-o", jp); !strings.HasPrefix(got, "Attached") {
			return fmt.Errorf("the server's volume %s: %q, want Attached", vol, got)
		}
		return nil
	})
	mustOpenstack(t, member, "server", "remove", "volume", server, vol)
	waitVolumeStatus(t, member, vol, "available")
	mustOpenstack(t, member, "volume", "delete", vol)
	bfv := "bfv-" + suffix
	began = time.Now()
	mustOpenstack(t, member, "server", "create", "--wait", "--flavor", flavor, "--image", image, "--boot-from-volume", "1", "--network", net, bfv)
	t.Logf("openstack server create --boot-from-volume --wait took %s", time.Since(began).Round(time.Millisecond))
	if got := s.MustKubectl("get", "vm", bfv, "-n", project, "-o", "jsonpath={.spec.rootVolume}"); got == "" {
		t.Errorf("kubectl: server %s has no root volume", bfv)
	}
	testenv.Eventually(t, osServerTimeout, func() error {
		if out := mustOpenstack(t, member, "console", "log", "show", bfv); !strings.Contains(out, testimage.Marker) {
			return fmt.Errorf("the volume-booted server's console lacks %s:\n%s", testimage.Marker, lastBytes(out, 600))
		}
		return nil
	})
	mustOpenstack(t, member, "server", "delete", "--wait", bfv)

	// Delete: the VM goes with the server.
	mustOpenstack(t, member, "server", "delete", "--wait", server)
	requireNotFound(t, s, "vm", server, "-n", project)
	s.MustKubectl("delete", "vm", kubeVM, "-n", project, "--wait=false")
	_ = os.Remove(qcow2)
}
