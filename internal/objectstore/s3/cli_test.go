package s3_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/objectstore/s3"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// fakeCreds is the EC2Credentials a test uses.
type fakeCreds map[string]struct {
	secret string
	id     auth.Identity
}

func (f fakeCreds) EC2Credential(ctx context.Context, access string) (string, auth.Identity, error) {
	c, ok := f[access]
	if !ok {
		return "", auth.Identity{}, auth.ErrUnauthorized
	}
	return c.secret, c.id, nil
}

var creds = fakeCreds{
	"AKALPHA": {"alpha-secret", auth.Identity{UserID: "u1", ProjectID: "alpha", Namespace: "alpha", Roles: []string{"member"}}},
	"AKBETA":  {"beta-secret", auth.Identity{UserID: "u2", ProjectID: "beta", Namespace: "beta", Roles: []string{"member"}}},
	"AKREAD":  {"read-secret", auth.Identity{UserID: "u3", ProjectID: "alpha", Namespace: "alpha", Roles: []string{"reader"}}},
}

func newServer(t *testing.T, tls bool) (*httptest.Server, *objectstore.Store) {
	t.Helper()
	st, err := objectstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := s3.Handler(s3.Config{Store: st, Credentials: creds})
	srv := httptest.NewUnstartedServer(h)
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, st
}

// TestAWSCLI drives the real aws CLI (Debian's awscli) against the handler.
// Over plain HTTP botocore signs each payload's SHA-256; over HTTPS it
// sends UNSIGNED-PAYLOAD: both are driven.
func TestAWSCLI(t *testing.T) {
	for _, tls := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[tls], func(t *testing.T) { testAWSCLI(t, tls) })
	}
}

func testAWSCLI(t *testing.T, tls bool) {
	awsBin := "/usr/bin/aws"
	if _, err := os.Stat(awsBin); err != nil {
		t.Skip("no /usr/bin/aws (apt-get install awscli)")
	}
	srv, _ := newServer(t, tls)
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if tls {
		os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	}
	env := append(os.Environ(), "AWS_CA_BUNDLE="+caFile, "AWS_ACCESS_KEY_ID=AKALPHA", "AWS_SECRET_ACCESS_KEY=alpha-secret", "AWS_DEFAULT_REGION=us-east-1",
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "creds"), "HOME="+dir, "AWS_PAGER=")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(awsBin, append([]string{"--endpoint-url", srv.URL}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	small := []byte("hello from the aws cli\n")
	big := make([]byte, 20<<20+12345) // multipart (8 MiB parts)
	rand.Read(big)
	os.WriteFile(filepath.Join(dir, "small.txt"), small, 0o644)
	os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644)

	run("s3", "mb", "s3://bkt")
	run("s3", "cp", filepath.Join(dir, "small.txt"), "s3://bkt/dir/small.txt")
	run("s3", "cp", filepath.Join(dir, "big.bin"), "s3://bkt/big.bin")
	if out := run("s3", "ls"); !strings.Contains(out, "bkt") {
		t.Errorf("ls: %s", out)
	}
	if out := run("s3", "ls", "s3://bkt/"); !strings.Contains(out, "PRE dir/") || !strings.Contains(out, "big.bin") {
		t.Errorf("ls bkt: %s", out)
	}
	if out := run("s3", "ls", "--recursive", "s3://bkt/"); !strings.Contains(out, "dir/small.txt") {
		t.Errorf("ls -r: %s", out)
	}
	run("s3", "cp", "s3://bkt/big.bin", filepath.Join(dir, "big.out"))
	run("s3", "cp", "s3://bkt/dir/small.txt", filepath.Join(dir, "small.out"))
	for _, f := range [][2]string{{"big.bin", "big.out"}, {"small.txt", "small.out"}} {
		a, _ := os.ReadFile(filepath.Join(dir, f[0]))
		b, _ := os.ReadFile(filepath.Join(dir, f[1]))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: downloaded %d bytes differ from %d uploaded", f[1], len(b), len(a))
		}
	}
	run("s3api", "head-object", "--bucket", "bkt", "--key", "big.bin")
	os.MkdirAll(filepath.Join(dir, "tree", "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "tree", "a.txt"), []byte("a"), 0o644)
	os.WriteFile(filepath.Join(dir, "tree", "sub", "b.txt"), []byte("bb"), 0o644)
	run("s3", "sync", filepath.Join(dir, "tree"), "s3://bkt/tree/")
	if out := run("s3", "sync", filepath.Join(dir, "tree"), "s3://bkt/tree/"); strings.Contains(out, "upload:") {
		t.Errorf("second sync uploaded again: %s", out)
	}
	run("s3", "sync", "s3://bkt/tree/", filepath.Join(dir, "tree2"))
	if b, _ := os.ReadFile(filepath.Join(dir, "tree2", "sub", "b.txt")); string(b) != "bb" {
		t.Errorf("sync down: %q", b)
	}
	run("s3", "cp", "s3://bkt/dir/small.txt", "s3://bkt/copy.txt")
	run("s3", "rm", "s3://bkt/copy.txt")
	out := run("s3", "presign", "s3://bkt/dir/small.txt")
	_ = out
	run("s3", "rm", "--recursive", "s3://bkt/")
	run("s3", "rb", "s3://bkt")
}

// TestS3cmd drives s3cmd (Debian's s3cmd), path-style, SigV4.
func TestS3cmd(t *testing.T) {
	bin := "/usr/bin/s3cmd"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no /usr/bin/s3cmd (apt-get install s3cmd)")
	}
	srv, _ := newServer(t, false)
	host := strings.TrimPrefix(srv.URL, "http://")
	dir := t.TempDir()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--config=/dev/null", "--no-ssl", "--host=" + host, "--host-bucket=" + host,
			"--access_key=AKBETA", "--secret_key=beta-secret", "--region=us-east-1", "--no-check-md5"}, args...)...)
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("s3cmd %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	data := make([]byte, 17<<20) // s3cmd's multipart chunks are 15 MiB
	rand.Read(data)
	os.WriteFile(filepath.Join(dir, "f.bin"), data, 0o644)
	run("mb", "s3://cmdbkt")
	run("put", filepath.Join(dir, "f.bin"), "s3://cmdbkt/a/f.bin")
	if out := run("ls", "s3://cmdbkt/a/"); !strings.Contains(out, "s3://cmdbkt/a/f.bin") {
		t.Errorf("ls: %s", out)
	}
	run("get", "s3://cmdbkt/a/f.bin", filepath.Join(dir, "g.bin"))
	if got, _ := os.ReadFile(filepath.Join(dir, "g.bin")); !bytes.Equal(got, data) {
		t.Errorf("s3cmd get: %d bytes differ", len(got))
	}
	run("del", "s3://cmdbkt/a/f.bin")
	run("rb", "s3://cmdbkt")
}
