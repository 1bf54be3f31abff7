package nova

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/volumeattach"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// TestGophercloudVolumes boots from volumes and attaches and detaches
// them with gophercloud, across the microversions that change the bodies.
func TestGophercloudVolumes(t *testing.T) {
	ctx := context.Background()
	for _, mv := range []string{"", "2.70", "2.79", "2.89", MaxVersion.String()} {
		t.Run("v"+mv, func(t *testing.T) {
			e := newEnv(t)
			e.addVolume("p1", "root", "root-id", "node1", storagev1.VolumeAvailable, func(v *storagev1.Volume) {
				v.Spec.Source = &storagev1.VolumeSource{Image: "cirros"}
			})
			e.addVolume("p1", "data", "data-id", "node1", storagev1.VolumeAvailable, nil)
			c := e.gopher("member", mv)
			var nets any = []servers.Network{{UUID: "net1-id"}}
			if mv == "" {
				nets = nil
			}
			// Boot from an existing volume.
			s, err := servers.Create(ctx, c, servers.CreateOpts{Name: "bfv", FlavorRef: "m1.small", Networks: nets,
				BlockDevice: []servers.BlockDevice{{SourceType: servers.SourceVolume, DestinationType: servers.DestinationVolume, UUID: "root-id", BootIndex: 0}}}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			e.setStatus(s.ID, running())
			got, err := servers.Get(ctx, c, s.ID).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if len(got.AttachedVolumes) != 1 || got.AttachedVolumes[0].ID != "root-id" || len(got.Image) != 0 {
				t.Errorf("server volumes %v image %v", got.AttachedVolumes, got.Image)
			}
			// Attach, list, get, detach.
			opts := volumeattach.CreateOpts{VolumeID: "data-id"}
			if mv == "2.79" || mv == "2.89" || mv == MaxVersion.String() {
				opts.DeleteOnTermination = true
			}
			a, err := volumeattach.Create(ctx, c, s.ID, opts).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if a.VolumeID != "data-id" || a.ServerID != s.ID || a.Device != "/dev/vdc" {
				t.Errorf("attach %+v", a)
			}
			if opts.DeleteOnTermination && (a.DeleteOnTermination == nil || !*a.DeleteOnTermination) {
				t.Errorf("attach delete_on_termination %+v", a)
			}
			if _, err := volumeattach.Create(ctx, c, s.ID, opts).Extract(); !gophercloud.ResponseCodeIs(err, 409) {
				t.Errorf("second attach: %v", err)
			}
			pages, err := volumeattach.List(c, s.ID).AllPages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			all, err := volumeattach.ExtractVolumeAttachments(pages)
			if err != nil || len(all) != 2 || all[0].VolumeID != "root-id" || all[0].Device != "/dev/vda" || all[1].VolumeID != "data-id" {
				t.Fatalf("list %+v %v", all, err)
			}
			g, err := volumeattach.Get(ctx, c, s.ID, "data-id").Extract()
			if err != nil || g.VolumeID != "data-id" {
				t.Fatalf("get %+v %v", g, err)
			}
			if hasID := g.ID != ""; hasID == (mv == "2.89" || mv == MaxVersion.String()) {
				t.Errorf("id at %s: %q", mv, g.ID)
			}
			if err := volumeattach.Delete(ctx, c, s.ID, "data-id").ExtractErr(); err != nil {
				t.Fatal(err)
			}
			if err := volumeattach.Delete(ctx, c, s.ID, "data-id").ExtractErr(); !gophercloud.ResponseCodeIs(err, 404) {
				t.Errorf("second detach: %v", err)
			}
			if err := volumeattach.Delete(ctx, c, s.ID, "root-id").ExtractErr(); !gophercloud.ResponseCodeIs(err, 400) {
				t.Errorf("root detach: %v", err)
			}
			// Boot from a new volume made from an image (--boot-from-volume).
			s2, err := servers.Create(ctx, c, servers.CreateOpts{Name: "bfv2", FlavorRef: "m1.small", Networks: nets,
				BlockDevice: []servers.BlockDevice{{SourceType: servers.SourceImage, DestinationType: servers.DestinationVolume, UUID: "cirros-id",
					VolumeSize: 2, DeleteOnTermination: true}}}, nil).Extract()
			if err != nil {
				t.Fatal(err)
			}
			if vm := e.vm(s2.ID); vm.Spec.RootVolume == "" || vm.Spec.Image != "" {
				t.Errorf("spec %+v", vm.Spec)
			}
		})
	}
}
