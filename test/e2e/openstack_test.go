package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// openstackTimeout bounds one run of the openstack CLI (it is slow to
// start: a Python program loading its plugins).
const openstackTimeout = 2 * time.Minute

// openrc runs `strata openrc` for s and returns its variables.
func openrc(t *testing.T, s *testenv.Server, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(s.Bin(), append([]string{"openrc", "--data-dir", s.DataDir()}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+s.Kubeconfig())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("strata openrc: %v\n%s", err, out)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		env[k] = strings.ReplaceAll(strings.Trim(v, "'"), `'\''`, "'")
	}
	for _, k := range []string{"OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME", "OS_PROJECT_DOMAIN_NAME", "OS_IDENTITY_API_VERSION", "OS_CACERT"} {
		if env[k] == "" {
			t.Fatalf("strata openrc sets no %s:\n%s", k, out)
		}
	}
	return env
}

// runOpenstack runs the real openstack CLI with env.
func runOpenstack(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), openstackTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openstack", args...)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("openstack %s: no answer in %s", strings.Join(args, " "), openstackTimeout)
	}
	return string(out), err
}

func mustOpenstack(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	out, err := runOpenstack(t, env, args...)
	if err != nil {
		t.Fatalf("openstack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// requireOpenstackCLI fails in CI, and skips elsewhere, without the real
// openstack CLI.
func requireOpenstackCLI(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openstack"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the openstack CLI is missing (hack/install-deps.sh installs python3-openstackclient)")
		}
		t.Skip("the openstack CLI is not installed")
	}
}

func TestOpenStackIdentity(t *testing.T) {
	requireOpenstackCLI(t)
	t.Parallel()
	s := sharedServer(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	project, user := "p1-"+suffix, "u1-"+suffix

	tok := mustOpenstack(t, admin, "token", "issue", "-f", "json")
	var issued map[string]string
	if err := json.Unmarshal([]byte(tok), &issued); err != nil || issued["id"] == "" || issued["project_id"] != "admin" || issued["user_id"] != "admin" {
		t.Errorf("token issue: %v\n%s", err, tok)
	}
	if out := mustOpenstack(t, admin, "catalog", "list", "-f", "value"); !strings.Contains(out, "identity") || !strings.Contains(out, "/identity/v3") {
		t.Errorf("catalog list shows no identity endpoint:\n%s", out)
	}

	if out := mustOpenstack(t, admin, "role", "list", "-f", "value", "-c", "Name"); !strings.Contains(out, "admin") || !strings.Contains(out, "member") || !strings.Contains(out, "reader") {
		t.Errorf("role list lacks the default roles:\n%s", out)
	}
	mustOpenstack(t, admin, "project", "create", project)
	t.Cleanup(func() { runOpenstack(t, admin, "project", "delete", project) })
	mustOpenstack(t, admin, "user", "create", "--password", "x", user)
	t.Cleanup(func() { runOpenstack(t, admin, "user", "delete", user) })
	if out, err := runOpenstack(t, admin, "project", "create", project); err == nil || !strings.Contains(out, "409") {
		t.Errorf("a second project %s: %v\n%s", project, err, out)
	}
	mustOpenstack(t, admin, "role", "add", "--project", project, "--user", user, "member")
	if out := mustOpenstack(t, admin, "role", "assignment", "list", "--project", project, "--names", "-f", "value"); !strings.Contains(out, "member") || !strings.Contains(out, user) {
		t.Errorf("role assignment list:\n%s", out)
	}

	// The project is a namespace; the role a RoleBinding in it.
	testenv.Eventually(t, controllerTimeout, func() error {
		r := s.Kubectl("get", "namespace", project, "-o", "name")
		if r.Err != nil {
			return fmt.Errorf("namespace %s: %v %s", project, r.Err, r.Stderr)
		}
		r = s.Kubectl("get", "rolebindings", "-n", project, "-o", "jsonpath={.items[*].roleRef.name}")
		if !strings.Contains(r.Stdout, "strata:project-member") {
			return fmt.Errorf("role bindings of %s: %q %s", project, r.Stdout, r.Stderr)
		}
		return nil
	})

	// u1's token, scoped to p1.
	u1 := map[string]string{}
	for k, v := range admin {
		u1[k] = v
	}
	u1["OS_USERNAME"], u1["OS_PASSWORD"], u1["OS_PROJECT_NAME"] = user, "x", project
	out := mustOpenstack(t, u1, "token", "issue", "-f", "json")
	if err := json.Unmarshal([]byte(out), &issued); err != nil || issued["project_id"] != project || issued["user_id"] != user {
		t.Errorf("u1's token: %v\n%s", err, out)
	}
	// The same token works on the Kubernetes API, with u1's rights: its
	// project's namespace, not another's.
	if out, err := kubectlWithToken(t, s, issued["id"], "get", "configmaps", "-n", project); err != nil {
		t.Errorf("kubectl --token (u1's) in %s: %v\n%s", project, err, out)
	}
	if out, err := kubectlWithToken(t, s, issued["id"], "create", "configmap", "made-by-u1", "-n", project); err != nil {
		t.Errorf("kubectl --token (u1's) create in %s: %v\n%s", project, err, out)
	}
	if out, err := kubectlWithToken(t, s, issued["id"], "get", "configmaps", "-n", "admin"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("kubectl --token (u1's) in admin: %v\n%s", err, out)
	}
	if out := mustOpenstack(t, u1, "project", "list", "-f", "value"); !strings.Contains(out, project) || strings.Contains(out, "admin") {
		t.Errorf("u1's projects:\n%s", out)
	}
	if out, err := runOpenstack(t, u1, "project", "create", "not-"+suffix); err == nil || !strings.Contains(out, "403") {
		t.Errorf("a member created a project: %v\n%s", err, out)
	}
	// A revoked token is refused.
	mustOpenstack(t, admin, "token", "revoke", issued["id"])
	if code, got := keystoneGet(t, admin, "/auth/projects", issued["id"]); code != http.StatusUnauthorized {
		t.Errorf("a revoked token: %d %s", code, got)
	}

	// A wrong password: 401, with Keystone's body.
	u1["OS_PASSWORD"] = "wrong"
	if out, err := runOpenstack(t, u1, "token", "issue"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("token with a wrong password: %v\n%s", err, out)
	}
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"domain":{"id":"default"},"password":"wrong"}}}}}`, user)
	code, got := keystonePost(t, admin, "/auth/tokens", body)
	if code != http.StatusUnauthorized || !strings.Contains(got, `"code":401`) || !strings.Contains(got, `"title":"Unauthorized"`) {
		t.Errorf("wrong password: %d %s", code, got)
	}
	if code, got := keystonePost(t, admin, "/auth/tokens", "{"); code != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d %s", code, got)
	}
}

// kubectlWithToken runs the bundled kubectl against s with only a bearer
// token (no client certificate).
func kubectlWithToken(t *testing.T, s *testenv.Server, token string, args ...string) (string, error) {
	t.Helper()
	empty := t.TempDir() + "/kubeconfig"
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Bin(), append([]string{"kubectl", "--kubeconfig", empty, "--server", s.URL(),
		"--certificate-authority", s.DataDir() + "/pki/ca.crt", "--token", token}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// keystoneGet GETs Keystone's path (below /v3) with token.
func keystoneGet(t *testing.T, env map[string]string, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", env["OS_AUTH_URL"]+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", token)
	return keystoneDo(t, env, req)
}

// keystonePost POSTs body to Keystone's path (below /v3) as a raw client.
func keystonePost(t *testing.T, env map[string]string, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", env["OS_AUTH_URL"]+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return keystoneDo(t, env, req)
}

// keystoneDo sends req, trusting the server's CA.
func keystoneDo(t *testing.T, env map[string]string, req *http.Request) (int, string) {
	t.Helper()
	ca, err := os.ReadFile(env["OS_CACERT"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, strings.ReplaceAll(buf.String(), " ", "")
}

// TestOpenStackNetwork drives Neutron's API with the real openstack CLI:
// what it creates is the networking.strata.io objects kubectl shows.
func TestOpenStackNetwork(t *testing.T) {
	requireOpenstackCLI(t)
	t.Parallel()
	s := sharedServer(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	net, sub, rt, sg := "net-"+suffix, "sub-"+suffix, "rt-"+suffix, "sg-"+suffix

	mustOpenstack(t, admin, "network", "create", net)
	t.Cleanup(func() { runOpenstack(t, admin, "network", "delete", net) })
	mustOpenstack(t, admin, "subnet", "create", "--network", net, "--subnet-range", "10.0.0.0/24", sub)
	if out := mustOpenstack(t, admin, "network", "list", "-f", "value", "-c", "Name"); !strings.Contains(out, net) {
		t.Errorf("network list lacks %s:\n%s", net, out)
	}
	if out := mustOpenstack(t, admin, "subnet", "show", sub, "-f", "value", "-c", "gateway_ip"); strings.TrimSpace(out) != "10.0.0.1" {
		t.Errorf("subnet show %s gateway_ip = %q, want 10.0.0.1", sub, out)
	}
	// The same objects through kubectl, in the project's namespace.
	if got := s.MustKubectl("get", "subnet", sub, "-n", "admin", "-o", "jsonpath={.spec.network} {.spec.cidr}"); got != net+" 10.0.0.0/24" {
		t.Errorf("kubectl get subnet %s = %q", sub, got)
	}
	mustOpenstack(t, admin, "router", "create", rt)
	t.Cleanup(func() { runOpenstack(t, admin, "router", "delete", rt) })
	mustOpenstack(t, admin, "router", "add", "subnet", rt, sub)
	t.Cleanup(func() { runOpenstack(t, admin, "router", "remove", "subnet", rt, sub) })
	if got := s.MustKubectl("get", "router", rt, "-n", "admin", "-o", "jsonpath={.spec.interfaces[0].subnet}"); got != sub {
		t.Errorf("kubectl get router %s interfaces = %q, want %s", rt, got, sub)
	}
	mustOpenstack(t, admin, "security", "group", "create", sg)
	t.Cleanup(func() { runOpenstack(t, admin, "security", "group", "delete", sg) })
	mustOpenstack(t, admin, "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80", sg)
	if got := s.MustKubectl("get", "securitygroup", sg, "-n", "admin", "-o", "jsonpath={.spec.rules[?(@.protocol==\"tcp\")].portRangeMin}"); got != "80" {
		t.Errorf("kubectl get securitygroup %s tcp rule port = %q, want 80", sg, got)
	}
	// Bad input: Neutron's error, not a 500.
	if out, err := runOpenstack(t, admin, "subnet", "create", "--network", net, "--subnet-range", "10.0.0.0/33", sub+"-bad"); err == nil || strings.Contains(out, "500") {
		t.Errorf("subnet create with a /33: %v\n%s", err, out)
	}
}

// TestOpenStackImage drives Glance's API with the real openstack CLI: a
// qcow2 file becomes an Active Image kubectl shows, and comes back
// byte-identical.
func TestOpenStackImage(t *testing.T) {
	requireOpenstackCLI(t)
	t.Parallel()
	s := sharedServer(t)
	admin := openrc(t, s)
	name := "img-" + randomSuffix(t)
	dir := t.TempDir()
	disk := dir + "/disk.qcow2"
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	mustOpenstack(t, admin, "image", "create", "--file", disk, "--disk-format", "qcow2", "--container-format", "bare", "--property", "os_distro=test", name)
	t.Cleanup(func() { runOpenstack(t, admin, "image", "delete", name) })
	if got := strings.TrimSpace(mustOpenstack(t, admin, "image", "show", name, "-f", "value", "-c", "status")); got != "active" {
		t.Errorf("image show %s status = %q, want active", name, got)
	}
	if out := mustOpenstack(t, admin, "image", "list", "-f", "value", "-c", "Name"); !strings.Contains(out, name) {
		t.Errorf("image list lacks %s:\n%s", name, out)
	}
	if got := s.MustKubectl("get", "vmimage", name, "-n", "admin", "-o", "jsonpath={.status.phase} {.status.format}"); got != "Active qcow2" {
		t.Errorf("kubectl get vmimage %s = %q, want Active qcow2", name, got)
	}
	mustOpenstack(t, admin, "image", "save", "--file", dir+"/back", name)
	want, _ := os.ReadFile(disk)
	if got, err := os.ReadFile(dir + "/back"); err != nil || !bytes.Equal(got, want) {
		t.Errorf("image save: %d bytes back (%v), %d uploaded", len(got), err, len(want))
	}
	mustOpenstack(t, admin, "image", "set", "--protected", name)
	if out, err := runOpenstack(t, admin, "image", "delete", name); err == nil {
		t.Errorf("deleted a protected image:\n%s", out)
	}
	mustOpenstack(t, admin, "image", "set", "--unprotected", name)
	mustOpenstack(t, admin, "image", "delete", name)
	requireNotFound(t, s, "vmimage", name, "-n", "admin")
}

// TestOpenStackCredentials drives Keystone's application credentials,
// groups and EC2 credentials with the real openstack CLI.
func TestOpenStackCredentials(t *testing.T) {
	requireOpenstackCLI(t)
	t.Parallel()
	s := sharedServer(t)
	admin := openrc(t, s)
	suffix := randomSuffix(t)
	project, user, group := "pc-"+suffix, "uc-"+suffix, "gc-"+suffix
	mustOpenstack(t, admin, "project", "create", project)
	t.Cleanup(func() { runOpenstack(t, admin, "project", "delete", project) })
	mustOpenstack(t, admin, "user", "create", "--password", "pw", user)
	t.Cleanup(func() { runOpenstack(t, admin, "user", "delete", user) })

	// A group's role reaches its members: Keystone and kubectl.
	mustOpenstack(t, admin, "group", "create", group)
	t.Cleanup(func() { runOpenstack(t, admin, "group", "delete", group) })
	mustOpenstack(t, admin, "group", "add", "user", group, user)
	if out := mustOpenstack(t, admin, "group", "contains", "user", group, user); !strings.Contains(out, user+" in group "+group) {
		t.Errorf("group contains user: %s", out)
	}
	mustOpenstack(t, admin, "role", "add", "--project", project, "--group", group, "member")
	member := map[string]string{}
	for k, v := range admin {
		member[k] = v
	}
	member["OS_USERNAME"], member["OS_PASSWORD"], member["OS_PROJECT_NAME"] = user, "pw", project
	var token string
	testenv.Eventually(t, controllerTimeout, func() error {
		out, err := runOpenstack(t, member, "token", "issue", "-f", "value", "-c", "id")
		if err != nil {
			return fmt.Errorf("token issue as a group member: %v %s", err, out)
		}
		token = strings.TrimSpace(out)
		if out, err := kubectlWithToken(t, s, token, "get", "configmaps", "-n", project); err != nil {
			return fmt.Errorf("kubectl --token (a group member's) in %s: %v %s", project, err, out)
		}
		return nil
	})

	// An application credential logs in by itself, scoped to the project.
	out := mustOpenstack(t, member, "application", "credential", "create", "-f", "json", "ci-"+suffix)
	var cred map[string]any
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred["secret"] == nil || cred["id"] == nil {
		t.Fatalf("application credential create: %v\n%s", err, out)
	}
	app := map[string]string{
		"OS_AUTH_URL": admin["OS_AUTH_URL"], "OS_CACERT": admin["OS_CACERT"], "OS_IDENTITY_API_VERSION": "3",
		"OS_AUTH_TYPE": "v3applicationcredential", "OS_APPLICATION_CREDENTIAL_ID": cred["id"].(string),
		"OS_APPLICATION_CREDENTIAL_SECRET": cred["secret"].(string),
		"OS_USERNAME":                      "", "OS_PASSWORD": "", "OS_PROJECT_NAME": "", "OS_USER_DOMAIN_NAME": "", "OS_PROJECT_DOMAIN_NAME": "",
	}
	if out := mustOpenstack(t, app, "token", "issue", "-f", "value", "-c", "project_id"); strings.TrimSpace(out) != project {
		t.Errorf("an application credential's token is scoped to %q, want %s", out, project)
	}
	if out := mustOpenstack(t, member, "application", "credential", "list", "-f", "value", "-c", "Name"); !strings.Contains(out, "ci-"+suffix) {
		t.Errorf("application credential list:\n%s", out)
	}
	app["OS_APPLICATION_CREDENTIAL_SECRET"] = "wrong"
	if out, err := runOpenstack(t, app, "token", "issue"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("an application credential with a wrong secret: %v\n%s", err, out)
	}
	mustOpenstack(t, member, "application", "credential", "delete", "ci-"+suffix)

	// EC2 credentials for S3.
	out = mustOpenstack(t, member, "ec2", "credentials", "create", "-f", "json")
	var ec2 map[string]any
	if err := json.Unmarshal([]byte(out), &ec2); err != nil || ec2["access"] == nil || ec2["secret"] == nil || ec2["project_id"] != project {
		t.Fatalf("ec2 credentials create: %v\n%s", err, out)
	}
	if out := mustOpenstack(t, member, "ec2", "credentials", "list", "-f", "value", "-c", "Access"); !strings.Contains(out, ec2["access"].(string)) {
		t.Errorf("ec2 credentials list:\n%s", out)
	}
	if out := s.MustKubectl("get", "ec2credentials.identity.strata.io", "-o", "yaml"); strings.Contains(out, ec2["secret"].(string)) {
		t.Errorf("the EC2 secret is readable in the EC2Credential objects")
	}
	mustOpenstack(t, member, "ec2", "credentials", "delete", ec2["access"].(string))
}
