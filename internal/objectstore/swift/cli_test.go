package swift_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/objectstore/swift"
	"github.com/strata-cloud/strata/internal/openstack/osapi/osapitest"
	"github.com/strata-cloud/strata/internal/openstack/server"
)

var tokens = osapitest.Tokens{
	"tok-alpha": {UserID: "u1", ProjectID: "alpha", Namespace: "alpha", Roles: []string{"member"}},
	"tok-beta":  {UserID: "u2", ProjectID: "beta", Namespace: "beta", Roles: []string{"member"}},
	"tok-read":  {UserID: "u3", ProjectID: "alpha", Namespace: "alpha", Roles: []string{"reader"}},
}

// newServer serves the Swift handler as the OpenStack listener mounts it:
// under /object-store, prefix stripped.
func newServer(t *testing.T) (*httptest.Server, *objectstore.Store) {
	t.Helper()
	st, err := objectstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// The OpenStack listener itself, as the server wires it.
	srv := httptest.NewUnstartedServer(nil)
	ostack := server.New(srv.Listener, nil, slog.New(slog.DiscardHandler))
	ostack.Mount("/object-store", swift.Handler(swift.Config{Store: st, Authenticator: tokens}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ostack.Serve(ctx) }()
	srv.URL = "http://" + srv.Listener.Addr().String()
	t.Cleanup(func() { cancel(); <-done })
	return srv, st
}

// TestSwiftCLI drives the real swift CLI (python3-swiftclient).
func TestSwiftCLI(t *testing.T) {
	bin := "/usr/bin/swift"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no /usr/bin/swift (apt-get install python3-swiftclient)")
	}
	srv, _ := newServer(t)
	storage := srv.URL + "/object-store/v1/AUTH_alpha"
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--os-auth-token", "tok-alpha", "--os-storage-url", storage}, args...)...)
		cmd.Dir = dir
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("swift %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	small := []byte("hello from swift\n")
	big := make([]byte, 5<<20+777)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "small.txt"), small, 0o644)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)

	run("post", "cont")
	run("upload", "cont", "small.txt")
	run("upload", "--segment-size", "1048576", "cont", "big.bin") // DLO
	run("upload", "--use-slo", "--segment-size", "1048576", "--object-name", "slo.bin", "cont", "big.bin")
	if out := run("list"); !strings.Contains(out, "cont") {
		t.Errorf("list: %s", out)
	}
	if out := run("list", "cont"); !strings.Contains(out, "small.txt") || !strings.Contains(out, "big.bin") || !strings.Contains(out, "slo.bin") {
		t.Errorf("list cont: %s", out)
	}
	if out := run("stat", "cont", "slo.bin"); !strings.Contains(out, "5243657") {
		t.Errorf("stat slo: %s", out)
	}
	os.Mkdir(filepath.Join(dir, "out"), 0o755)
	for _, name := range []string{"small.txt", "big.bin", "slo.bin"} {
		run("download", "cont", name, "-o", filepath.Join(dir, "out", name))
		got, _ := os.ReadFile(filepath.Join(dir, "out", name))
		want := big
		if name == "small.txt" {
			want = small
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: downloaded %d bytes differ", name, len(got))
		}
	}
	run("post", "-m", "color:blue", "cont", "small.txt")
	if out := run("stat", "cont", "small.txt"); !strings.Contains(out, "Color: blue") {
		t.Errorf("stat meta: %s", out)
	}
	// Temp URL.
	run("post", "-m", "Temp-URL-Key:sekrit")
	out := strings.TrimSpace(run("tempurl", "GET", "3600", "/v1/AUTH_alpha/cont/small.txt", "sekrit"))
	resp, err := http.Get(srv.URL + "/object-store" + out)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, small) {
		t.Errorf("temp URL %s: %d %q", out, resp.StatusCode, body)
	}
	run("delete", "cont", "slo.bin")
	run("delete", "cont", "big.bin")
	run("delete", "--all")
	if out := run("list"); strings.TrimSpace(out) != "" {
		t.Errorf("after delete --all: %q", out)
	}
}
