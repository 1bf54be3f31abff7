package nova

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/availabilityzones"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/flavors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/hypervisors"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/keypairs"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
)

// gopher is a gophercloud compute client of the test server.
func (e *env) gopher(token, mv string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{}
	pc.SetToken(token)
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: e.srv.URL + "/compute/v2.1/", Type: "compute", Microversion: mv}
}

// TestGophercloud reads every body this API writes with gophercloud's
// own types, at 2.1 and at the newest microversion.
func TestGophercloud(t *testing.T) {
	ctx := context.Background()
	for _, mv := range []string{"", "2.1", "2.47", "2.79", MaxVersion.String()} {
		t.Run("v"+mv, func(t *testing.T) {
			e := newEnv(t)
			c, admin := e.gopher("member", mv), e.gopher("admin", mv)
			var nets any = []servers.Network{{UUID: "net1-id"}}
			if mv == "" || mv == "2.1" {
				nets = nil
			}
			s, err := servers.Create(ctx, c, servers.CreateOpts{Name: "g1", FlavorRef: "m1.small", ImageRef: "cirros-id", Networks: nets,
				Metadata: map[string]string{"a": "b"}, UserData: []byte("#!/bin/sh\necho hi\n")}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			e.setStatus(s.ID, running())
			got, err := servers.Get(ctx, c, s.ID).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != "g1" || got.Status != "ACTIVE" || got.Metadata["a"] != "b" || got.TenantID != "p1" || got.Created.IsZero() {
				t.Errorf("server %+v", got)
			}
			if _, err := servers.Get(ctx, admin, s.ID).Extract(); err != nil {
				t.Errorf("admin's view: %v", err)
			}
			pages, err := servers.List(c, servers.ListOpts{Name: "g"}).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, err := servers.ExtractServers(pages)
			if err != nil || len(all) != 1 {
				t.Fatalf("list %v %v", all, err)
			}
			if err := servers.Stop(ctx, c, s.ID).ExtractErr(); err != nil {
				t.Fatal(err)
			}
			if err := servers.Stop(ctx, c, s.ID).ExtractErr(); !gophercloud.ResponseCodeIs(err, 409) {
				t.Errorf("second stop: %v", err)
			}
			if _, err := servers.Update(ctx, c, s.ID, servers.UpdateOpts{Name: "g2"}).Extract(); err != nil {
				t.Fatal(err)
			}
			out, err := servers.ShowConsoleOutput(ctx, c, s.ID, servers.ShowConsoleOutputOpts{Length: 10}).Extract()
			if err != nil || out == "" {
				t.Errorf("console %q %v", out, err)
			}
			if err := servers.Delete(ctx, c, s.ID).ExtractErr(); err != nil {
				t.Fatal(err)
			}
			if _, err := servers.Get(ctx, c, s.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
				t.Errorf("after delete: %v", err)
			}

			fp, err := flavors.ListDetail(c, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			fl, err := flavors.ExtractFlavors(fp)
			if err != nil || len(fl) != 2 {
				t.Fatalf("flavors %v %v", fl, err)
			}
			f, err := flavors.Create(ctx, admin, flavors.CreateOpts{Name: "g.tiny", RAM: 128, VCPUs: 1, Disk: gophercloud.IntToPointer(0)}).Extract()
			if err != nil || f.ID != "g.tiny" || f.RAM != 128 {
				t.Fatalf("flavor create %+v %v", f, err)
			}
			if f, err = flavors.Get(ctx, c, "g.tiny").Extract(); err != nil || f.VCPUs != 1 {
				t.Errorf("flavor get %+v %v", f, err)
			}
			if err := flavors.Delete(ctx, admin, "g.tiny").ExtractErr(); err != nil {
				t.Error(err)
			}

			kp, err := keypairs.Create(ctx, c, keypairs.CreateOpts{Name: "gk"}).Extract()
			if err != nil || kp.PrivateKey == "" || kp.Fingerprint == "" {
				if mv != MaxVersion.String() { // 2.92 and on: a public key is required
					t.Fatalf("keypair %+v %v", kp, err)
				}
			}
			pub, _, _ := GenerateKeyPair("")
			if _, err := keypairs.Create(ctx, c, keypairs.CreateOpts{Name: "gk2", PublicKey: pub}).Extract(); err != nil {
				t.Fatal(err)
			}
			kpp, err := keypairs.List(c, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if kps, err := keypairs.ExtractKeyPairs(kpp); err != nil || len(kps) == 0 {
				t.Errorf("keypairs %v %v", kps, err)
			}
			if err := keypairs.Delete(ctx, c, "gk2", nil).ExtractErr(); err != nil {
				t.Error(err)
			}

			if l, err := limits.Get(ctx, c, nil).Extract(); err != nil || l.Absolute.MaxTotalInstances != -1 {
				t.Errorf("limits %+v %v", l, err)
			}
			if q, err := quotasets.Get(ctx, c, "p1").Extract(); err != nil || q.Instances != -1 {
				t.Errorf("quotas %+v %v", q, err)
			}
			if q, err := quotasets.GetDetail(ctx, c, "p1").Extract(); err != nil || q.Instances.Limit != -1 {
				t.Errorf("quota detail %+v %v", q, err)
			}
			zp, err := availabilityzones.List(c).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if zs, err := availabilityzones.ExtractAvailabilityZones(zp); err != nil || len(zs) != 1 || zs[0].ZoneName != "nova" {
				t.Errorf("zones %v %v", zs, err)
			}
			hp, err := hypervisors.List(admin, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if hs, err := hypervisors.ExtractHypervisors(hp); err != nil || len(hs) != 1 || hs[0].HypervisorHostname != "node1" {
				t.Errorf("hypervisors %+v %v", hs, err)
			}
			sp, err := services.List(admin, nil).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ss, err := services.ExtractServices(sp); err != nil || len(ss) != 1 || ss[0].Binary != "nova-compute" {
				t.Errorf("services %+v %v", ss, err)
			}
		})
	}
}
