package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
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
	var member roles.Role
	err = roles.List(identity, roles.ListOpts{Name: "member"}).EachPage(gopherCtx(t), func(_ context.Context, p pagination.Page) (bool, error) {
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
	type tenant struct{ project, user string }
	var tenants []tenant
	for _, p := range []string{"ga-" + suffix, "gb-" + suffix} {
		proj, err := projects.Create(gopherCtx(t), identity, projects.CreateOpts{Name: p, DomainID: "default"}).Extract()
		gopherMust(t, "create project "+p, err)
		t.Cleanup(func() { projects.Delete(context.Background(), identity, proj.ID) })
		u, err := users.Create(gopherCtx(t), identity, users.CreateOpts{Name: "u-" + p, DomainID: "default", Password: "pw-" + p, DefaultProjectID: proj.ID}).Extract()
		gopherMust(t, "create user u-"+p, err)
		t.Cleanup(func() { users.Delete(context.Background(), identity, u.ID) })
		gopherMust(t, "assign member", roles.Assign(gopherCtx(t), identity, member.ID, roles.AssignOpts{UserID: u.ID, ProjectID: proj.ID}).ExtractErr())
		tenants = append(tenants, tenant{project: proj.Name, user: u.Name})
	}
	if _, err := projects.Create(gopherCtx(t), identity, projects.CreateOpts{Name: tenants[0].project, DomainID: "default"}).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusConflict) {
		t.Errorf("a second project %s: %v, want 409", tenants[0].project, err)
	}

	// The role binding reaches kube-apiserver's RBAC a moment after the
	// assignment; a member's first token may come before it.
	var a, b *gophercloud.ProviderClient
	testenv.Eventually(t, controllerTimeout, func() error {
		var err error
		if a, err = gopherAuth(t, env, "u-"+tenants[0].project, "pw-"+tenants[0].project, tenants[0].project); err != nil {
			return err
		}
		b, err = gopherAuth(t, env, "u-"+tenants[1].project, "pw-"+tenants[1].project, tenants[1].project)
		return err
	})
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
	if _, err := gopherAuth(t, env, "u-"+tenants[0].project, "wrong", tenants[0].project); !gophercloud.ResponseCodeIs(err, http.StatusUnauthorized) {
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
