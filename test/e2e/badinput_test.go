package e2e

import (
	"bytes"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// badInputTimeout bounds how long a server given bad input may take to
// give up; the slowest case is an unreachable external etcd.
const badInputTimeout = 60 * time.Second

// serverArgs returns `strata server` arguments for dir on free ports,
// followed by extra (later flags win).
func serverArgs(t *testing.T, dir string, extra ...string) []string {
	t.Helper()
	ports, err := testenv.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"server", "--data-dir", dir, "--bind-address", "127.0.0.1", "--disable-agent",
		"--api-port", strconv.Itoa(ports[0]),
		"--etcd-client-port", strconv.Itoa(ports[1]),
		"--etcd-peer-port", strconv.Itoa(ports[2]),
		"--registry-port", strconv.Itoa(ports[3]),
		"--openstack-port", strconv.Itoa(ports[4]),
		"--s3-port", strconv.Itoa(ports[5])}
	return append(args, extra...)
}

// listen holds a loopback port open until t ends and returns it.
func listen(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// snapshot reads every regular file under dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel], err = os.ReadFile(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// copyDir copies the tree at src to dst, keeping file modes.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(target, info.Mode().Perm())
		case d.Type().IsRegular():
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(target, data, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// initialise has a server initialise dir, then stops it gracefully.
func initialise(t *testing.T, dir string) {
	t.Helper()
	s := testenv.Start(t, testenv.Options{DataDir: dir})
	// Let the controllers settle first: stopping right after readiness is
	// TestStopRightAfterReady's subject, not this one's.
	testenv.Eventually(t, controllerTimeout, func() error {
		return s.Kubectl("get", "serviceaccount", "default", "-n", "default").Err
	})
	s.Stop()
}

func TestServerRejectsBadInput(t *testing.T) {
	testenv.RequireHost(t)
	bin := testenv.Binary(t)
	// A data dir initialised once, by the first case that needs it; it
	// lives in this test's directory so that later cases can copy it.
	initialised, initDone := t.TempDir(), false
	initialisedCopy := func(t *testing.T) string {
		t.Helper()
		if !initDone {
			initialise(t, initialised)
			initDone = true
		}
		dir := filepath.Join(t.TempDir(), "data")
		copyDir(t, initialised, dir)
		return dir
	}
	garbage := []byte("this is not a certificate\n")

	for _, tc := range []struct {
		name string
		// setup prepares the case and returns the server arguments.
		setup func(t *testing.T) []string
		// want are substrings of the one `strata: ` line.
		want []string
		// unchanged is a directory whose files must be left as they were.
		unchanged func(args []string) string
	}{
		{name: "api port zero",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--api-port", "0") },
			want:  []string{"--api-port", "0"}},
		{name: "api port too large",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--api-port", "70000") },
			want:  []string{"--api-port", "70000"}},
		{name: "api port not a number",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--api-port", "https") },
			want:  []string{"api-port", "https"}},
		{name: "bind address not an IP",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--bind-address", "nope") },
			want:  []string{"--bind-address", "nope"}},
		{name: "etcd client port negative",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--etcd-client-port", "-1") },
			want:  []string{"--etcd-client-port"}},
		{name: "unknown log level",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--log-level", "loud") },
			want:  []string{"--log-level", "loud"}},
		{name: "unknown flag",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--no-such-flag") },
			want:  []string{"--no-such-flag"}},
		{name: "api port in use",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--api-port", listen(t)) },
			want:  []string{"--api-port: cannot listen on"}},
		{name: "registry port in use",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--registry-port", listen(t)) },
			want:  []string{"--registry-port: cannot listen on"}},
		{name: "openstack port in use",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--openstack-port", listen(t)) },
			want:  []string{"--openstack-port: cannot listen on"}},
		{name: "openstack port out of range",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--openstack-port", "70000") },
			want:  []string{"--openstack-port", "70000"}},
		{name: "registry port zero",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--registry-port", "0") },
			want:  []string{"--registry-port", "0"}},
		{name: "etcd client port in use",
			setup: func(t *testing.T) []string {
				return serverArgs(t, t.TempDir(), "--etcd-client-port", listen(t))
			},
			want: []string{"--etcd-client-port: cannot listen on"}},
		{name: "data dir not a strata dir",
			setup: func(t *testing.T) []string {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("precious\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return serverArgs(t, dir)
			},
			want:      []string{"not empty and not a Strata data dir"},
			unchanged: dataDirArg},
		{name: "data dir in use",
			setup: func(t *testing.T) []string { return serverArgs(t, sharedServer(t).DataDir()) },
			want:  []string{"in use by another strata process"}},
		{name: "etcd unreachable",
			setup: func(t *testing.T) []string {
				return serverArgs(t, t.TempDir(), "--etcd-servers", "http://127.0.0.1:1")
			},
			want: []string{"--etcd-servers", "etcd unreachable"}},
		{name: "etcd servers not a URL",
			setup: func(t *testing.T) []string { return serverArgs(t, t.TempDir(), "--etcd-servers", "127.0.0.1:2379") },
			want:  []string{"--etcd-servers"}},
		{name: "corrupt apiserver certificate",
			setup: func(t *testing.T) []string {
				dir := initialisedCopy(t)
				writeFile(t, filepath.Join(dir, "pki", "apiserver.crt"), garbage)
				return serverArgs(t, dir)
			},
			want:      []string{"corrupt PKI file", "apiserver.crt"},
			unchanged: pkiDirArg},
		{name: "corrupt CA certificate",
			setup: func(t *testing.T) []string {
				dir := initialisedCopy(t)
				writeFile(t, filepath.Join(dir, "pki", "ca.crt"), garbage)
				return serverArgs(t, dir)
			},
			want:      []string{"corrupt PKI file", "ca.crt"},
			unchanged: pkiDirArg},
		{name: "missing CA key",
			setup: func(t *testing.T) []string {
				dir := initialisedCopy(t)
				if err := os.Remove(filepath.Join(dir, "pki", "ca.key")); err != nil {
					t.Fatal(err)
				}
				return serverArgs(t, dir)
			},
			want:      []string{"corrupt PKI file", "ca.key"},
			unchanged: pkiDirArg},
		{name: "corrupt marker",
			setup: func(t *testing.T) []string {
				dir := initialisedCopy(t)
				writeFile(t, filepath.Join(dir, "strata.json"), garbage)
				return serverArgs(t, dir)
			},
			want:      []string{"strata.json"},
			unchanged: dataDirArg},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.setup(t)
			var before map[string][]byte
			if tc.unchanged != nil {
				before = snapshot(t, tc.unchanged(args))
			}
			r := testenv.RunTimeout(t, badInputTimeout, bin, args...)
			if r.ExitCode < 1 {
				t.Fatalf("strata %s: want a non-zero exit, got %s", strings.Join(args, " "), r)
			}
			line := errorLine(t, r)
			for _, w := range tc.want {
				if !strings.Contains(line, w) {
					t.Errorf("error line %q lacks %q", line, w)
				}
			}
			if tc.unchanged != nil {
				after := snapshot(t, tc.unchanged(args))
				if !maps.EqualFunc(before, after, bytes.Equal) {
					t.Errorf("the failed start changed files in %s: before %v, after %v", tc.unchanged(args), slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
				}
			}
		})
	}
	// The server whose data dir another start tried to take still serves.
	if sharedState.srv != nil {
		s := sharedServer(t)
		if out := s.MustKubectl("get", "--raw", "/readyz"); out != "ok" {
			t.Errorf("shared server /readyz = %q after the data-dir-in-use case", out)
		}
	}
}

// errorLine checks that a failed start explains itself in exactly one
// `strata: ` line, the last one on stderr, with nothing but structured log
// lines before it (no usage text, no stack trace), and returns it.
func errorLine(t *testing.T, r testenv.Result) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
	last := lines[len(lines)-1]
	if !strings.HasPrefix(last, "strata: ") {
		t.Fatalf("last stderr line %q does not start with `strata: `; stderr:\n%s", last, r.Stderr)
	}
	for _, l := range lines[:len(lines)-1] {
		if !strings.HasPrefix(l, "time=") {
			t.Errorf("stderr has more than the one error line; unexpected line %q; stderr:\n%s", l, r.Stderr)
			break
		}
	}
	if strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("stdout is not empty:\n%s", r.Stdout)
	}
	return last
}

func dataDirArg(args []string) string {
	i := slices.Index(args, "--data-dir")
	return args[i+1]
}

func pkiDirArg(args []string) string { return filepath.Join(dataDirArg(args), "pki") }

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
