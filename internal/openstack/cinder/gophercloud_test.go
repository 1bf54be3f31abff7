package cinder

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/availabilityzones"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/limits"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/quotasets"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/services"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/snapshots"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumes"
	"github.com/gophercloud/gophercloud/v2/openstack/blockstorage/v3/volumetypes"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// gopher is a gophercloud block-storage client of the test server, at the
// catalog's URL for project p1.
func (e *env) gopher(token, mv string) *gophercloud.ServiceClient {
	pc := &gophercloud.ProviderClient{}
	pc.SetToken(token)
	return &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: e.srv.URL + "/volume/v3/p1/", Type: "block-storage", Microversion: mv}
}

// TestGophercloud reads every body this API writes with gophercloud's own
// types, at 3.0 and at the newest microversion.
func TestGophercloud(t *testing.T) {
	ctx := context.Background()
	for _, mv := range []string{"", "3.0", "3.42", MaxVersion.String()} {
		t.Run("v"+mv, func(t *testing.T) {
			e := newEnv(t)
			c, admin := e.gopher("member", mv), e.gopher("admin", mv)
			v, err := volumes.Create(ctx, c, volumes.CreateOpts{Size: 1, Name: "g1", Description: "d", Metadata: map[string]string{"a": "b"}}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if v.Status != "creating" || v.Size != 1 || v.Name != "g1" || v.Metadata["a"] != "b" || v.CreatedAt.IsZero() || v.TenantID != "p1" {
				t.Errorf("created %+v", v)
			}
			e.setPhase(v.ID, storagev1.VolumeAvailable)
			got, err := volumes.Get(ctx, c, v.ID).Extract()
			if err != nil || got.Status != "available" || got.Bootable != "false" || got.VolumeType != "__DEFAULT__" {
				t.Fatalf("get %+v %v", got, err)
			}
			if a, err := volumes.Get(ctx, admin, v.ID).Extract(); err != nil || a.Host != "node2@file#file" {
				t.Errorf("admin's view %+v %v", a, err)
			}
			pages, err := volumes.List(c, volumes.ListOpts{Name: "g1"}).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, err := volumes.ExtractVolumes(pages)
			if err != nil || len(all) != 1 || all[0].ID != v.ID {
				t.Fatalf("list %v %v", all, err)
			}
			name := "g2"
			if u, err := volumes.Update(ctx, c, v.ID, volumes.UpdateOpts{Name: &name}).Extract(); err != nil || u.Name != "g2" {
				t.Errorf("update %+v %v", u, err)
			}
			if err := volumes.ExtendSize(ctx, c, v.ID, volumes.ExtendSizeOpts{NewSize: 2}).ExtractErr(); err != nil {
				t.Fatal(err)
			}
			if err := volumes.ExtendSize(ctx, c, v.ID, volumes.ExtendSizeOpts{NewSize: 1}).ExtractErr(); !gophercloud.ResponseCodeIs(err, 400) {
				t.Errorf("shrink: %v", err)
			}
			e.setPhase(v.ID, storagev1.VolumeAvailable)
			if err := volumes.SetBootable(ctx, c, v.ID, volumes.BootableOpts{Bootable: true}).ExtractErr(); err != nil {
				t.Errorf("bootable: %v", err)
			}

			s, err := snapshots.Create(ctx, c, snapshots.CreateOpts{VolumeID: v.ID, Name: "gs"}).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if s.VolumeID != v.ID || s.Size != 2 || s.Status != "creating" || s.ProjectID != "p1" {
				t.Errorf("snapshot %+v", s)
			}
			e.setSnapAvailable(s.ID, "2Gi")
			if err := volumes.Delete(ctx, c, v.ID, volumes.DeleteOpts{}).ExtractErr(); !gophercloud.ResponseCodeIs(err, 400) {
				t.Errorf("delete with a snapshot: %v", err)
			}
			spages, err := snapshots.ListDetail(c, snapshots.ListOpts{VolumeID: v.ID}).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ss, err := snapshots.ExtractSnapshots(spages)
			if err != nil || len(ss) != 1 || ss[0].Status != "available" {
				t.Errorf("snapshots %+v %v", ss, err)
			}
			v2, err := volumes.Create(ctx, c, volumes.CreateOpts{SnapshotID: s.ID, Size: 2}, nil).Extract()
			if err != nil || v2.SnapshotID != s.ID {
				t.Fatalf("from snapshot %+v %v", v2, err)
			}
			if _, err := volumes.Create(ctx, c, volumes.CreateOpts{SnapshotID: s.ID, Size: 1}, nil).Extract(); !gophercloud.ResponseCodeIs(err, 400) {
				t.Errorf("smaller than the snapshot: %v", err)
			}
			if _, err := volumes.Get(ctx, e.gopherOther(mv), v.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
				t.Errorf("another project: %v", err)
			}
			if err := snapshots.Delete(ctx, c, s.ID).ExtractErr(); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{v.ID, v2.ID} {
				if err := volumes.Delete(ctx, c, id, volumes.DeleteOpts{}).ExtractErr(); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := volumes.Get(ctx, c, v.ID).Extract(); !gophercloud.ResponseCodeIs(err, 404) {
				t.Errorf("after delete: %v", err)
			}

			tpages, err := volumetypes.List(c, volumetypes.ListOpts{}).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ts, err := volumetypes.ExtractVolumeTypes(tpages); err != nil || len(ts) != 2 || !ts[0].IsPublic {
				t.Errorf("types %+v %v", ts, err)
			}
			if l, err := limits.Get(ctx, c).Extract(); err != nil || l.Absolute.MaxTotalVolumeGigabytes != 100 {
				t.Errorf("limits %+v %v", l, err)
			}
			if q, err := quotasets.Get(ctx, c, "p1").Extract(); err != nil || q.Volumes != 10 || q.Snapshots != -1 {
				t.Errorf("quota %+v %v", q, err)
			}
			if u, err := quotasets.GetUsage(ctx, c, "p1").Extract(); err != nil || u.Gigabytes.Limit != 100 {
				t.Errorf("usage %+v %v", u, err)
			}
			zpages, err := availabilityzones.List(c).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if zs, err := availabilityzones.ExtractAvailabilityZones(zpages); err != nil || len(zs) != 1 || zs[0].ZoneName != "nova" || !zs[0].ZoneState.Available {
				t.Errorf("zones %+v %v", zs, err)
			}
			spg, err := services.List(admin, services.ListOpts{}).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if svcs, err := services.ExtractServices(spg); err != nil || len(svcs) != 4 {
				t.Errorf("services %+v %v", svcs, err)
			}
		})
	}
}

func (e *env) gopherOther(mv string) *gophercloud.ServiceClient {
	c := e.gopher("other", mv)
	c.Endpoint = e.srv.URL + "/volume/v3/p2/"
	return c
}
