package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

// waitOpenstackField waits until `openstack KIND show NAME` says want in
// field.
func waitOpenstackField(t *testing.T, env map[string]string, kind, name, field, want string) {
	t.Helper()
	testenv.Eventually(t, volumeTimeout, func() error {
		if got := showField(t, env, kind, name, field); got != want {
			return fmt.Errorf("%s %s: %s is %q, want %q", kind, name, field, got, want)
		}
		return nil
	})
}

// openStackVolumes drives Cinder with the real openstack CLI as a new
// project's member: a volume made, grown, snapshotted and cloned from its
// snapshot, each step checked through kubectl; a volume with a snapshot
// cannot be deleted; another project's member cannot see it; everything
// deleted leaves no Volume behind.
func openStackVolumes(t *testing.T, s *testenv.Server) {
	requireOpenstackCLI(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	project, user, other := "osv-"+suffix, "osvu-"+suffix, "osvx-"+suffix

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
	if out := mustOpenstack(t, member, "catalog", "list"); !strings.Contains(out, "volumev3") || !strings.Contains(out, "/volume/v3/") {
		t.Errorf("the catalog has no volumev3 endpoint:\n%s", out)
	}

	// A 1 GiB volume: a Volume named v1, realised by the node.
	mustOpenstack(t, member, "volume", "create", "--size", "1", "v1")
	waitOpenstackField(t, member, "volume", "v1", "status", "available")
	if got := s.MustKubectl("get", "volume", "v1", "-n", project, "-o", "jsonpath={.status.phase} {.spec.size} {.spec.volumeMode} {.spec.format}"); got != "Available 1Gi Block raw" {
		t.Errorf("kubectl get volume v1 = %q", got)
	}
	if node := s.MustKubectl("get", "volume", "v1", "-n", project, "-o", "jsonpath={.spec.node}"); node == "" {
		t.Error("volume v1 has no node")
	}
	if out := mustOpenstack(t, member, "volume", "list", "-f", "value", "-c", "Name", "-c", "Status", "-c", "Size"); !strings.Contains(out, "v1 available 1") {
		t.Errorf("volume list:\n%s", out)
	}
	id := showField(t, member, "volume", "v1", "id")
	if uid := s.MustKubectl("get", "volume", "v1", "-n", project, "-o", "jsonpath={.metadata.uid}"); uid != id {
		t.Errorf("volume ID %s, Volume UID %s", id, uid)
	}

	// Grow it.
	mustOpenstack(t, member, "volume", "set", "--size", "2", "v1")
	if got := s.MustKubectl("get", "volume", "v1", "-n", project, "-o", "jsonpath={.spec.size}"); got != "2Gi" {
		t.Errorf("after volume set --size 2: spec.size %s", got)
	}
	waitOpenstackField(t, member, "volume", "v1", "status", "available")
	if got := showField(t, member, "volume", "v1", "size"); got != "2" {
		t.Errorf("size after extend: %s", got)
	}

	// A snapshot, and a volume from it.
	mustOpenstack(t, member, "volume", "snapshot", "create", "--volume", "v1", "s1")
	waitOpenstackField(t, member, "volume snapshot", "s1", "status", "available")
	if got := s.MustKubectl("get", "volumesnapshot", "s1", "-n", project, "-o", "jsonpath={.spec.volume} {.status.phase}"); got != "v1 Available" {
		t.Errorf("kubectl get volumesnapshot s1 = %q", got)
	}
	mustOpenstack(t, member, "volume", "create", "--snapshot", "s1", "v2")
	waitOpenstackField(t, member, "volume", "v2", "status", "available")
	if got := s.MustKubectl("get", "volume", "v2", "-n", project, "-o", "jsonpath={.spec.source.snapshot} {.spec.size}"); got != "s1 2Gi" {
		t.Errorf("kubectl get volume v2 = %q", got)
	}
	if got := showField(t, member, "volume", "v2", "snapshot_id"); got != showField(t, member, "volume snapshot", "s1", "id") {
		t.Errorf("v2's snapshot_id %s", got)
	}

	// A volume with a snapshot stays; another project sees nothing.
	if out, err := runOpenstack(t, member, "volume", "delete", "v1"); err == nil || !strings.Contains(out, "dependent snapshots") {
		t.Errorf("volume delete v1 with a snapshot: %v\n%s", err, out)
	}
	s.MustKubectl("get", "volume", "v1", "-n", project)
	for _, args := range [][]string{{"volume", "show", "v1"}, {"volume", "show", id}, {"volume", "delete", id}} {
		if out, err := runOpenstack(t, outsider, args...); err == nil || !strings.Contains(out, "No volume with a name or ID") {
			t.Errorf("another project's openstack %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out := mustOpenstack(t, outsider, "volume", "list", "-f", "value", "-c", "Name"); strings.TrimSpace(out) != "" {
		t.Errorf("another project's volume list:\n%s", out)
	}

	// Delete everything.
	mustOpenstack(t, member, "volume", "snapshot", "delete", "s1")
	testenv.Eventually(t, volumeTimeout, func() error {
		if r := s.Kubectl("get", "volumesnapshot", "s1", "-n", project); r.Err == nil {
			return fmt.Errorf("volumesnapshot s1 is still there")
		}
		return nil
	})
	mustOpenstack(t, member, "volume", "delete", "v1", "v2")
	testenv.Eventually(t, volumeTimeout, func() error {
		if out := strings.TrimSpace(s.MustKubectl("get", "volumes", "-n", project, "-o", "name")); out != "" {
			return fmt.Errorf("volumes left: %s", out)
		}
		return nil
	})
	if out := mustOpenstack(t, member, "volume", "list", "-f", "value", "-c", "Name"); strings.TrimSpace(out) != "" {
		t.Errorf("volume list after deleting:\n%s", out)
	}
}
