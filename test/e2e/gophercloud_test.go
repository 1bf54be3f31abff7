package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/strata-cloud/strata/internal/testenv"
)

// gopherTimeout bounds one gophercloud call.
const gopherTimeout = time.Minute

// gopherAuth authenticates to the Keystone that env (an openrc) names, as
// user with password, scoped to project; it returns the provider client or
// the authentication's error.
func gopherAuth(t *testing.T, env map[string]string, user, password, project string) (*gophercloud.ProviderClient, error) {
	t.Helper()
	ca, err := os.ReadFile(env["OS_CACERT"])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	pc, err := openstack.NewClient(env["OS_AUTH_URL"])
	if err != nil {
		t.Fatal(err)
	}
	pc.HTTPClient = http.Client{Timeout: gopherTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	ctx, cancel := context.WithTimeout(context.Background(), gopherTimeout)
	defer cancel()
	err = openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
		IdentityEndpoint: env["OS_AUTH_URL"], Username: user, Password: password, DomainName: "Default",
		TenantName: project, AllowReauth: true,
	})
	return pc, err
}

// mustGopherAuth is gopherAuth that fails the test on an error.
func mustGopherAuth(t *testing.T, env map[string]string, user, password, project string) *gophercloud.ProviderClient {
	t.Helper()
	pc, err := gopherAuth(t, env, user, password, project)
	if err != nil {
		t.Fatalf("gophercloud: authenticate %s in %s: %v", user, project, err)
	}
	return pc
}

// gopherCtx is the context of one gophercloud call.
func gopherCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), gopherTimeout)
	t.Cleanup(cancel)
	return ctx
}

// gopherMust fails the test when a gophercloud call failed.
func gopherMust(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("gophercloud: %s: %v", what, err)
	}
}

// wantCode checks that err is an HTTP error with code.
func wantCode(t *testing.T, what string, err error, code int) {
	t.Helper()
	if !gophercloud.ResponseCodeIs(err, code) {
		t.Errorf("gophercloud: %s: got %v, want HTTP %d", what, err, code)
	}
}

// gopherTenant is a project with a member, and the member's client.
type gopherTenant struct {
	project, user string
	client        *gophercloud.ProviderClient
}

// gopherMembers makes each project with a member (password "pw-PROJECT")
// and returns the members' authenticated clients.
func gopherMembers(t *testing.T, env map[string]string, identity *gophercloud.ServiceClient, names ...string) []gopherTenant {
	t.Helper()
	var member roles.Role
	err := roles.List(identity, roles.ListOpts{Name: "member"}).EachPage(gopherCtx(t), func(_ context.Context, p pagination.Page) (bool, error) {
		rs, err := roles.ExtractRoles(p)
		if len(rs) > 0 {
			member = rs[0]
		}
		return false, err
	})
	gopherMust(t, "list roles", err)
	if member.ID == "" {
		t.Fatal("no member role")
	}
	var tenants []gopherTenant
	for _, p := range names {
		proj, err := projects.Create(gopherCtx(t), identity, projects.CreateOpts{Name: p, DomainID: "default"}).Extract()
		gopherMust(t, "create project "+p, err)
		t.Cleanup(func() { projects.Delete(context.Background(), identity, proj.ID) })
		u, err := users.Create(gopherCtx(t), identity, users.CreateOpts{Name: "u-" + p, DomainID: "default", Password: "pw-" + p, DefaultProjectID: proj.ID}).Extract()
		gopherMust(t, "create user u-"+p, err)
		t.Cleanup(func() { users.Delete(context.Background(), identity, u.ID) })
		gopherMust(t, "assign member", roles.Assign(gopherCtx(t), identity, member.ID, roles.AssignOpts{UserID: u.ID, ProjectID: proj.ID}).ExtractErr())
		tenants = append(tenants, gopherTenant{project: proj.Name, user: u.Name})
	}
	// The role binding reaches kube-apiserver's RBAC a moment after the
	// assignment; a member's first token may come before it.
	for i := range tenants {
		testenv.Eventually(t, controllerTimeout, func() error {
			var err error
			tenants[i].client, err = gopherAuth(t, env, tenants[i].user, "pw-"+tenants[i].project, tenants[i].project)
			return err
		})
	}
	return tenants
}

// TestGophercloudIdentityAndNetwork drives Keystone and Neutron with
// gophercloud/v2, the Go SDK that Terraform's OpenStack provider uses: two
// projects with a member each, each member's networks invisible to the
// other, and Keystone's error cases.
func TestGophercloudIdentityAndNetwork(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	env := openrc(t, s)
	suffix := randomSuffix(t)
	admin := mustGopherAuth(t, env, env["OS_USERNAME"], env["OS_PASSWORD"], env["OS_PROJECT_NAME"])
	identity, err := openstack.NewIdentityV3(admin, gophercloud.EndpointOpts{})
	gopherMust(t, "identity client", err)

	// Keystone: the admin's token validates; the catalog names Neutron.
	ok, err := tokens.Validate(gopherCtx(t), identity, admin.Token())
	if err != nil || !ok {
		t.Errorf("validate the admin's token: %v %v", ok, err)
	}

	// Two projects, a member in each.
	tenants := gopherMembers(t, env, identity, "ga-"+suffix, "gb-"+suffix)
	if _, err := projects.Create(gopherCtx(t), identity, projects.CreateOpts{Name: tenants[0].project, DomainID: "default"}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("a second project %s: %v, want 409", tenants[0].project, err)
	}
	a, b := tenants[0].client, tenants[1].client
	netA, err := openstack.NewNetworkV2(a, gophercloud.EndpointOpts{})
	gopherMust(t, "network client", err)
	netB, err := openstack.NewNetworkV2(b, gophercloud.EndpointOpts{})
	gopherMust(t, "network client", err)

	// Project A's network, subnet, router and security group.
	var n *networks.Network
	testenv.Eventually(t, controllerTimeout, func() error {
		var err error
		n, err = networks.Create(gopherCtx(t), netA, networks.CreateOpts{Name: "net-a"}).Extract()
		return err
	})
	sn, err := subnets.Create(gopherCtx(t), netA, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.9.0.0/24", IPVersion: gophercloud.IPv4, Name: "sub-a"}).Extract()
	gopherMust(t, "create subnet", err)
	if sn.GatewayIP != "10.9.0.1" {
		t.Errorf("subnet gateway %q, want 10.9.0.1", sn.GatewayIP)
	}
	r, err := routers.Create(gopherCtx(t), netA, routers.CreateOpts{Name: "rt-a"}).Extract()
	gopherMust(t, "create router", err)
	_, err = routers.AddInterface(gopherCtx(t), netA, r.ID, routers.AddInterfaceOpts{SubnetID: sn.ID}).Extract()
	gopherMust(t, "add router interface", err)
	sg, err := groups.Create(gopherCtx(t), netA, groups.CreateOpts{Name: "web"}).Extract()
	gopherMust(t, "create security group", err)
	_, err = rules.Create(gopherCtx(t), netA, rules.CreateOpts{SecGroupID: sg.ID, Direction: rules.DirIngress, EtherType: rules.EtherType4,
		Protocol: rules.ProtocolTCP, PortRangeMin: 443, PortRangeMax: 443}).Extract()
	gopherMust(t, "create security group rule", err)
	if got := s.MustKubectl("get", "securitygroup", "web", "-n", tenants[0].project, "-o", `jsonpath={.spec.rules[?(@.protocol=="tcp")].portRangeMin}`); got != "443" {
		t.Errorf("kubectl: the tcp rule of security group web = %q, want 443", got)
	}
	if got := s.MustKubectl("get", "network", "net-a", "-n", tenants[0].project, "-o", "jsonpath={.metadata.uid}"); got != n.ID {
		t.Errorf("kubectl: network net-a uid %q, gophercloud's id %q", got, n.ID)
	}

	// Project B sees none of it, and cannot touch it.
	_, err = networks.Get(gopherCtx(t), netB, n.ID).Extract()
	wantCode(t, "project B gets project A's network", err, http.StatusNotFound)
	wantCode(t, "project B deletes project A's subnet", subnets.Delete(gopherCtx(t), netB, sn.ID).ExtractErr(), http.StatusNotFound)
	_, err = routers.Update(gopherCtx(t), netB, r.ID, routers.UpdateOpts{Name: "mine"}).Extract()
	wantCode(t, "project B renames project A's router", err, http.StatusNotFound)
	pages, err := networks.List(netB, networks.ListOpts{}).AllPages(gopherCtx(t))
	gopherMust(t, "project B lists networks", err)
	seen, err := networks.ExtractNetworks(pages)
	gopherMust(t, "extract networks", err)
	for _, it := range seen {
		if it.ID == n.ID {
			t.Errorf("project B lists project A's network %s", n.ID)
		}
	}

	// Bad input: Neutron's 400, not a 500; a subnet delete with a router
	// interface on it is a 409.
	_, err = subnets.Create(gopherCtx(t), netA, subnets.CreateOpts{NetworkID: n.ID, CIDR: "10.9.1.0/33", IPVersion: gophercloud.IPv4}).Extract()
	wantCode(t, "a /33 subnet", err, http.StatusBadRequest)
	wantCode(t, "delete a subnet with a router interface", subnets.Delete(gopherCtx(t), netA, sn.ID).ExtractErr(), http.StatusConflict)

	// Keystone's errors: a wrong password is 401; a revoked token is
	// refused everywhere.
	if _, err := gopherAuth(t, env, tenants[0].user, "wrong", tenants[0].project); !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
		t.Errorf("a wrong password: %v, want 401", err)
	}
	revoked := b.Token()
	gopherMust(t, "revoke project B's token", tokens.Revoke(gopherCtx(t), identity, revoked).Err)
	if ok, err := tokens.Validate(gopherCtx(t), identity, revoked); ok || err != nil && !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Errorf("validate a revoked token: %v %v, want false", ok, err)
	}
	stale, err := openstack.NewNetworkV2(b, gophercloud.EndpointOpts{})
	gopherMust(t, "network client", err)
	stale.ProviderClient.ReauthFunc = nil
	_, err = networks.List(stale, networks.ListOpts{}).AllPages(gopherCtx(t))
	wantCode(t, "a revoked token on Neutron", err, http.StatusUnauthorized)
}

// TestGophercloudComputeAndImage drives Nova and Glance with gophercloud
// on the control plane (no node: servers stay BUILD): an image uploaded
// and downloaded, a flavor, a key pair, a server, and the error cases —
// another project's server and image are 404, unknown flavors and images
// 400, malformed JSON 400, a microversion past the supported range 406.
func TestGophercloudComputeAndImage(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	env := openrc(t, s)
	suffix := randomSuffix(t)
	admin := mustGopherAuth(t, env, env["OS_USERNAME"], env["OS_PASSWORD"], env["OS_PROJECT_NAME"])
	identity, err := openstack.NewIdentityV3(admin, gophercloud.EndpointOpts{})
	gopherMust(t, "identity client", err)
	tenants := gopherMembers(t, env, identity, "gc-"+suffix, "gd-"+suffix)
	a, b := tenants[0], tenants[1]
	computeOf := func(pc *gophercloud.ProviderClient) *gophercloud.ServiceClient {
		c, err := openstack.NewComputeV2(pc, gophercloud.EndpointOpts{})
		gopherMust(t, "compute client", err)
		c.Microversion = "2.79"
		return c
	}
	imageOf := func(pc *gophercloud.ProviderClient) *gophercloud.ServiceClient {
		c, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{})
		gopherMust(t, "image client", err)
		return c
	}
	novaAdmin, novaA, novaB := computeOf(admin), computeOf(a.client), computeOf(b.client)
	glanceA, glanceB := imageOf(a.client), imageOf(b.client)

	// Glance: create, upload, download.
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, "32M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	data, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	img, err := images.Create(gopherCtx(t), glanceA, images.CreateOpts{Name: "gimg", DiskFormat: "qcow2", ContainerFormat: "bare", Tags: []string{"e2e"}}).Extract()
	gopherMust(t, "create image", err)
	gopherMust(t, "upload image", imagedata.Upload(gopherCtx(t), glanceA, img.ID, bytes.NewReader(data)).ExtractErr())
	got, err := images.Get(gopherCtx(t), glanceA, img.ID).Extract()
	gopherMust(t, "get image", err)
	if got.Status != images.ImageStatusActive || got.SizeBytes != int64(len(data)) {
		t.Errorf("image after upload: status %s, size %d; want active, %d", got.Status, got.SizeBytes, len(data))
	}
	body, err := imagedata.Download(gopherCtx(t), glanceA, img.ID).Extract()
	gopherMust(t, "download image", err)
	back, err := io.ReadAll(body)
	body.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Errorf("download: %d bytes (%v), uploaded %d", len(back), err, len(data))
	}
	_, err = images.Get(gopherCtx(t), glanceB, img.ID).Extract()
	wantCode(t, "project B gets project A's private image", err, http.StatusNotFound)

	// Nova: a flavor (the admin's), a key pair, a server.
	disk1 := 1
	fl, err := flavors.Create(gopherCtx(t), novaAdmin, flavors.CreateOpts{Name: "gf-" + suffix, RAM: 96, VCPUs: 1, Disk: &disk1}).Extract()
	gopherMust(t, "create flavor", err)
	t.Cleanup(func() { flavors.Delete(context.Background(), novaAdmin, fl.ID) })
	_, err = flavors.Create(gopherCtx(t), novaA, flavors.CreateOpts{Name: "mine-" + suffix, RAM: 96, VCPUs: 1, Disk: &disk1}).Extract()
	wantCode(t, "a member creates a flavor", err, http.StatusForbidden)
	kp, err := keypairs.Create(gopherCtx(t), novaA, keypairs.CreateOpts{Name: "gkp"}).Extract()
	gopherMust(t, "create key pair", err)
	if kp.PrivateKey == "" || kp.PublicKey == "" {
		t.Errorf("key pair: private %d bytes, public %q", len(kp.PrivateKey), kp.PublicKey)
	}
	srv, err := servers.Create(gopherCtx(t), novaA, keypairs.CreateOptsExt{
		CreateOptsBuilder: servers.CreateOpts{Name: "gsrv", FlavorRef: fl.ID, ImageRef: img.ID, Networks: "auto"}, KeyName: "gkp"}, nil).Extract()
	gopherMust(t, "create server", err)
	shown, err := servers.Get(gopherCtx(t), novaA, srv.ID).Extract()
	gopherMust(t, "get server", err)
	if shown.Name != "gsrv" || shown.Status != "BUILD" || shown.KeyName != "gkp" {
		t.Errorf("server: name %q status %q key %q; want gsrv BUILD gkp (no node runs it)", shown.Name, shown.Status, shown.KeyName)
	}
	if got := s.MustKubectl("get", "vm", "gsrv", "-n", a.project, "-o", "jsonpath={.metadata.uid} {.spec.flavor} {.spec.image}"); got != srv.ID+" "+fl.ID+" gimg" {
		t.Errorf("kubectl get vm gsrv = %q, want %s %s gimg", got, srv.ID, fl.ID)
	}
	pages, err := servers.List(novaA, servers.ListOpts{Name: "gsrv"}).AllPages(gopherCtx(t))
	gopherMust(t, "list servers", err)
	if all, err := servers.ExtractServers(pages); err != nil || len(all) != 1 || all[0].ID != srv.ID {
		t.Errorf("servers named gsrv: %v %v", all, err)
	}

	// Another project: 404, never a leak.
	_, err = servers.Get(gopherCtx(t), novaB, srv.ID).Extract()
	wantCode(t, "project B gets project A's server", err, http.StatusNotFound)
	wantCode(t, "project B deletes project A's server", servers.Delete(gopherCtx(t), novaB, srv.ID).ExtractErr(), http.StatusNotFound)
	pages, err = servers.List(novaB, servers.ListOpts{}).AllPages(gopherCtx(t))
	gopherMust(t, "project B lists servers", err)
	if all, _ := servers.ExtractServers(pages); len(all) != 0 {
		t.Errorf("project B lists %d servers, want none", len(all))
	}

	// Bad input.
	_, err = servers.Create(gopherCtx(t), novaA, servers.CreateOpts{Name: "bad", FlavorRef: "no-such-flavor", ImageRef: img.ID, Networks: "auto"}, nil).Extract()
	wantCode(t, "a server with an unknown flavor", err, http.StatusBadRequest)
	_, err = servers.Create(gopherCtx(t), novaA, servers.CreateOpts{Name: "bad", FlavorRef: fl.ID, ImageRef: "00000000-0000-0000-0000-000000000000", Networks: "auto"}, nil).Extract()
	wantCode(t, "a server with an unknown image", err, http.StatusBadRequest)
	tooNew := computeOf(a.client)
	tooNew.Microversion = "9.99"
	_, err = servers.Get(gopherCtx(t), tooNew, srv.ID).Extract()
	wantCode(t, "microversion 9.99", err, http.StatusNotAcceptable)
	req, err := http.NewRequest("POST", novaA.ServiceURL("servers"), strings.NewReader("{"))
	gopherMust(t, "request", err)
	req.Header.Set("X-Auth-Token", a.client.Token())
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.HTTPClient.Do(req)
	gopherMust(t, "POST malformed JSON", err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d, want 400", resp.StatusCode)
	}

	// Delete: the server goes, and its VM.
	gopherMust(t, "delete server", servers.Delete(gopherCtx(t), novaA, srv.ID).ExtractErr())
	testenv.Eventually(t, controllerTimeout, func() error {
		if _, err := servers.Get(gopherCtx(t), novaA, srv.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
			return fmt.Errorf("server %s after delete: %v", srv.ID, err)
		}
		return nil
	})
	gopherMust(t, "delete image", images.Delete(gopherCtx(t), glanceA, img.ID).ExtractErr())
}
