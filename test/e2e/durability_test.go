package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// seed creates objects of several kinds and returns the ConfigMap's UID.
func seed(t *testing.T, s *testenv.Server, tag string) string {
	t.Helper()
	s.MustKubectl("create", "namespace", "durable-"+tag)
	ns := "durable-" + tag
	s.MustKubectl("create", "configmap", "cm", "-n", ns, "--from-literal=value="+tag)
	s.MustKubectl("create", "secret", "generic", "secret", "-n", ns, "--from-literal=password=pw-"+tag)
	s.MustKubectl("create", "deployment", "web", "-n", ns, "--image=registry.k8s.io/pause:3.10")
	s.MustKubectlStdin(flavor("durable-"+tag, "{vcpus: 3, ramMiB: 1024}"), "create", "-f", "-")
	testenv.Eventually(t, controllerTimeout, func() error {
		if out := s.MustKubectl("get", "replicasets", "-n", ns, "-o", "name"); strings.TrimSpace(out) == "" {
			return fmt.Errorf("no ReplicaSet yet")
		}
		return nil
	})
	return jsonpath(t, s, "{.metadata.uid}", "get", "configmap", "cm", "-n", ns)
}

// verifySeeded checks that what seed created is still there, unchanged.
func verifySeeded(t *testing.T, s *testenv.Server, tag, uid string) {
	t.Helper()
	ns := "durable-" + tag
	if got := jsonpath(t, s, "{.metadata.uid} {.data.value}", "get", "configmap", "cm", "-n", ns); got != uid+" "+tag {
		t.Errorf("configmap after restart = %q, want %q", got, uid+" "+tag)
	}
	if got := decodeBase64(t, jsonpath(t, s, "{.data.password}", "get", "secret", "secret", "-n", ns)); got != "pw-"+tag {
		t.Errorf("secret after restart = %q, want pw-%s", got, tag)
	}
	if got := jsonpath(t, s, "{.spec.vcpus}", "get", "flavor", "durable-"+tag); got != "3" {
		t.Errorf("flavor vcpus after restart = %q, want 3", got)
	}
	s.MustKubectl("get", "deployment", "web", "-n", ns)
	if out := s.MustKubectl("get", "replicasets", "-n", ns, "-o", "name"); strings.TrimSpace(out) == "" {
		t.Errorf("no ReplicaSet in %s after restart", ns)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestKillAndRestartKeepsState(t *testing.T) {
	s := testenv.Start(t, testenv.Options{})
	ca := readFile(t, filepath.Join(s.DataDir(), "pki", "ca.crt"))
	uid := seed(t, s, "kill")

	s.Kill()
	if s.Running() {
		t.Fatal("server still running after SIGKILL")
	}
	s.Restart()

	verifySeeded(t, s, "kill", uid)
	if after := readFile(t, filepath.Join(s.DataDir(), "pki", "ca.crt")); !bytes.Equal(ca, after) {
		t.Error("pki/ca.crt changed across kill -9 and restart")
	}
	// The restarted server takes writes.
	s.MustKubectl("create", "configmap", "after-restart", "-n", "durable-kill")
	// Controllers work again too. After kill -9 this can take up to the
	// controller-manager's leader-election lease (15 s): the dead process
	// never released its lease.
	began := time.Now()
	uid2 := seed(t, s, "kill2")
	t.Logf("controllers acted on new objects %s after the restart", time.Since(began).Round(time.Millisecond))
	verifySeeded(t, s, "kill2", uid2)
}

func TestGracefulStopAndRestart(t *testing.T) {
	s := testenv.Start(t, testenv.Options{})
	ca := readFile(t, filepath.Join(s.DataDir(), "pki", "ca.crt"))
	uid := seed(t, s, "term")

	began := time.Now()
	s.Stop() // SIGTERM; fails unless exit code 0 within testenv.StopTimeout
	t.Logf("graceful stop took %s", time.Since(began).Round(time.Millisecond))
	for name, port := range map[string]int{"api": s.Ports().API, "etcd client": s.Ports().EtcdClient, "etcd peer": s.Ports().EtcdPeer} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			t.Errorf("%s port %d still accepts connections after the server exited", name, port)
		}
	}

	s.Restart()
	verifySeeded(t, s, "term", uid)
	if after := readFile(t, filepath.Join(s.DataDir(), "pki", "ca.crt")); !bytes.Equal(ca, after) {
		t.Error("pki/ca.crt changed across a graceful restart")
	}
	if n := strings.Count(s.Log(), testenv.ReadyLogLine); n != 2 {
		t.Errorf("server logged %q %d times over two starts, want 2", testenv.ReadyLogLine, n)
	}
}

// TestStopRightAfterReady stops a server as soon as it is ready, while the
// controller-manager is still starting its controllers: the stop must still
// be clean.
func TestStopRightAfterReady(t *testing.T) {
	s := testenv.Start(t, testenv.Options{})
	s.Stop()
	if strings.Contains(s.Log(), "\nF1") {
		t.Errorf("a component exited fatally during shutdown:\n%s", fatalLines(s.Log()))
	}
}

// TestStopDuringStartup sends SIGTERM before the server is ready: it must
// stop cleanly, and a later start on the same dir must work.
func TestStopDuringStartup(t *testing.T) {
	testenv.RequireHost(t)
	bin := testenv.Binary(t)
	dir := t.TempDir()
	args := serverArgs(t, dir)
	var stderr lockedBuffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	// Mid-startup: the data dir is taken and the PKI written, the API not
	// ready yet.
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(dir, "pki", "ca.crt"))
		return err
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("SIGTERM during startup: %v, want exit code 0; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(testenv.StopTimeout):
		t.Fatalf("server did not exit within %s of SIGTERM during startup; stderr:\n%s", testenv.StopTimeout, stderr.String())
	}
	s := testenv.Start(t, testenv.Options{DataDir: dir})
	s.MustKubectl("get", "namespace", "default")
}

func fatalLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "F1") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
