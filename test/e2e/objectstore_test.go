package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/strata-cloud/strata/internal/testenv"
)

// Debian's object storage clients, by path: another aws may come first on
// PATH.
var objectClients = map[string]string{"swift": "/usr/bin/swift", "aws": "/usr/bin/aws", "s3cmd": "/usr/bin/s3cmd"}

// requireObjectClients fails in CI, and skips elsewhere, without the
// clients.
func requireObjectClients(t *testing.T) {
	t.Helper()
	for name, path := range objectClients {
		if _, err := os.Stat(path); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (hack/install-deps.sh installs python3-swiftclient, awscli and s3cmd)", path)
			}
			t.Skipf("%s is not installed", name)
		}
	}
}

// runTool runs a client in dir with env added to the environment.
func runTool(t *testing.T, env map[string]string, dir, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openstackTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: no answer in %s", bin, strings.Join(args, " "), openstackTimeout)
	}
	return string(out), err
}

func mustTool(t *testing.T, env map[string]string, dir, bin string, args ...string) string {
	t.Helper()
	out, err := runTool(t, env, dir, bin, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return out
}

func sameFile(t *testing.T, what, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s: %d bytes back, %d sent, or different bytes", what, len(y), len(x))
	}
}

// TestObjectStorage drives the object store with the real clients: the
// openstack CLI and swift through the catalog, aws and s3cmd through the
// S3 port with EC2 credentials from Keystone; one project's containers
// are its buckets, and another project reaches none of them.
func TestObjectStorage(t *testing.T) {
	requireOpenstackCLI(t)
	requireObjectClients(t)
	t.Parallel()
	s := sharedServer(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	project, other := "po-"+suffix, "px-"+suffix
	for _, p := range []string{project, other} {
		mustOpenstack(t, admin, "project", "create", p)
		t.Cleanup(func() { runOpenstack(t, admin, "project", "delete", p) })
		mustOpenstack(t, admin, "user", "create", "--password", "pw", "u-"+p)
		t.Cleanup(func() { runOpenstack(t, admin, "user", "delete", "u-"+p) })
		mustOpenstack(t, admin, "role", "add", "--project", p, "--user", "u-"+p, "member")
	}
	member := asUser(admin, "u-"+project, "pw", project)
	outsider := asUser(admin, "u-"+other, "pw", other)
	dir := t.TempDir()
	small := filepath.Join(dir, "small.txt")
	if err := os.WriteFile(small, []byte("hello from strata "+suffix+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.bin")
	data := make([]byte, 64<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// The openstack CLI: a container, an object in and out.
	bucket := "docs-" + suffix
	testenv.Eventually(t, controllerTimeout, func() error {
		_, err := runOpenstack(t, member, "container", "create", bucket)
		return err
	})
	mustOpenstack(t, member, "object", "create", "--name", "hello.txt", bucket, small)
	if out := mustOpenstack(t, member, "object", "list", bucket, "-f", "value", "-c", "Name"); !strings.Contains(out, "hello.txt") {
		t.Errorf("object list %s:\n%s", bucket, out)
	}
	mustOpenstack(t, member, "object", "save", "--file", filepath.Join(dir, "hello.back"), bucket, "hello.txt")
	sameFile(t, "openstack object save", small, filepath.Join(dir, "hello.back"))

	// swift, through the catalog's object-store endpoint.
	swift := objectClients["swift"]
	mustTool(t, member, dir, swift, "upload", bucket, "small.txt")
	if out := mustTool(t, member, dir, swift, "list", bucket); !strings.Contains(out, "small.txt") || !strings.Contains(out, "hello.txt") {
		t.Errorf("swift list %s:\n%s", bucket, out)
	}
	mustTool(t, member, dir, swift, "download", bucket, "small.txt", "-o", "small.back")
	sameFile(t, "swift download", small, filepath.Join(dir, "small.back"))

	// S3 with EC2 credentials: the same container is a bucket; a 64 MiB
	// upload goes in parts and comes back byte-identical.
	out := mustOpenstack(t, member, "ec2", "credentials", "create", "-f", "json")
	var ec2 map[string]any
	if err := json.Unmarshal([]byte(out), &ec2); err != nil || ec2["access"] == nil || ec2["secret"] == nil {
		t.Fatalf("ec2 credentials create: %v\n%s", err, out)
	}
	endpoint := "https://127.0.0.1:" + strconv.Itoa(s.Ports().S3)
	awsEnv := map[string]string{
		"AWS_ACCESS_KEY_ID": ec2["access"].(string), "AWS_SECRET_ACCESS_KEY": ec2["secret"].(string),
		"AWS_CA_BUNDLE": admin["OS_CACERT"], "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "HOME": dir,
	}
	aws := func(args ...string) string {
		t.Helper()
		return mustTool(t, awsEnv, dir, objectClients["aws"], append([]string{"--endpoint-url", endpoint}, args...)...)
	}
	if out := aws("s3", "ls", "s3://"+bucket+"/"); !strings.Contains(out, "hello.txt") || !strings.Contains(out, "small.txt") {
		t.Errorf("aws s3 ls of the Swift container %s:\n%s", bucket, out)
	}
	aws("s3", "cp", "big.bin", "s3://"+bucket+"/big.bin")
	aws("s3", "cp", "s3://"+bucket+"/big.bin", "big.back")
	sameFile(t, "aws s3 cp of 64 MiB", big, filepath.Join(dir, "big.back"))
	if out := aws("s3api", "head-object", "--bucket", bucket, "--key", "big.bin"); !strings.Contains(out, `-8\"`) {
		t.Errorf("head-object: want a multipart ETag of 8 parts:\n%s", out)
	}
	// The multipart object is whole through Swift too.
	mustTool(t, member, dir, swift, "download", bucket, "big.bin", "-o", "big.swift")
	sameFile(t, "swift download of the S3 multipart object", big, filepath.Join(dir, "big.swift"))

	// s3cmd, with the same credentials.
	s3cfg := filepath.Join(dir, "s3cfg")
	host := "127.0.0.1:" + strconv.Itoa(s.Ports().S3)
	cfg := "[default]\naccess_key = " + ec2["access"].(string) + "\nsecret_key = " + ec2["secret"].(string) +
		"\nhost_base = " + host + "\nhost_bucket = " + host + "\nuse_https = True\nca_certs_file = " + admin["OS_CACERT"] + "\nsignature_v2 = False\n"
	if err := os.WriteFile(s3cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s3cmd := func(args ...string) (string, error) {
		return runTool(t, map[string]string{"HOME": dir}, dir, objectClients["s3cmd"], append([]string{"-c", s3cfg}, args...)...)
	}
	if out, err := s3cmd("put", "small.txt", "s3://"+bucket+"/via-s3cmd.txt"); err != nil {
		t.Errorf("s3cmd put: %v\n%s", err, out)
	}
	if out, err := s3cmd("ls", "s3://"+bucket); err != nil || !strings.Contains(out, "via-s3cmd.txt") {
		t.Errorf("s3cmd ls: %v\n%s", err, out)
	}

	// Bad input: a wrong secret is SignatureDoesNotMatch.
	bad := map[string]string{}
	for k, v := range awsEnv {
		bad[k] = v
	}
	bad["AWS_SECRET_ACCESS_KEY"] = "wrong"
	if out, err := runTool(t, bad, dir, objectClients["aws"], "--endpoint-url", endpoint, "s3", "ls", "s3://"+bucket+"/"); err == nil || !strings.Contains(out, "SignatureDoesNotMatch") {
		t.Errorf("aws with a wrong secret: %v\n%s", err, out)
	}

	// Another project reaches none of it, through either API.
	if out, err := runOpenstack(t, outsider, "object", "list", bucket); err == nil {
		t.Errorf("another project lists container %s:\n%s", bucket, out)
	}
	if out, err := runTool(t, outsider, dir, swift, "download", bucket, "small.txt", "-o", "stolen"); err == nil {
		t.Errorf("another project downloads from %s:\n%s", bucket, out)
	}
	if out := mustOpenstack(t, outsider, "container", "list", "-f", "value"); strings.Contains(out, bucket) {
		t.Errorf("another project's container list shows %s:\n%s", bucket, out)
	}

	// Objects are not in etcd: nothing of them is a Kubernetes object, and
	// a non-empty container cannot be deleted.
	if out, err := runOpenstack(t, member, "container", "delete", bucket); err == nil {
		t.Errorf("deleted a non-empty container:\n%s", out)
	}
	mustOpenstack(t, member, "container", "delete", "--recursive", bucket)
}
