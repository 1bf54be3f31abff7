package glance

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imagedata"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/imageimport"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// TestGophercloud drives the API with gophercloud's image v2 client, as
// the catalog's https://HOST:PORT/image endpoint gives it.
func TestGophercloud(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	pc := &gophercloud.ProviderClient{HTTPClient: http.Client{}}
	pc.SetToken("member")
	sc := &gophercloud.ServiceClient{ProviderClient: pc, Endpoint: e.srv.URL + "/image/", ResourceBase: e.srv.URL + "/image/v2/", Type: "image"}

	vis := images.ImageVisibilityPrivate
	img, err := images.Create(ctx, sc, images.CreateOpts{Name: "gc", DiskFormat: "raw", ContainerFormat: "bare", Visibility: &vis,
		Tags: []string{"a"}, MinDisk: 1, Properties: map[string]string{"os_distro": "cirros"}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Status != images.ImageStatusQueued || img.Owner != "p1" || img.Properties["os_distro"] != "cirros" || img.MinDiskGigabytes != 1 {
		t.Fatalf("created %+v", img)
	}
	data := diskimage.FakeQcow2(70000, 1<<30)
	if err := imagedata.Upload(ctx, sc, img.ID, bytes.NewReader(data)).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	img, err = images.Get(ctx, sc, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Status != images.ImageStatusActive || img.SizeBytes != int64(len(data)) || img.VirtualSize != 1<<30 || img.DiskFormat != "qcow2" || img.Checksum == "" || img.CreatedAt.IsZero() {
		t.Fatalf("uploaded %+v", img)
	}
	rc, err := imagedata.Download(ctx, sc, img.ID).Extract()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Fatalf("downloaded %d bytes", len(got))
	}
	img, err = images.Update(ctx, sc, img.ID, images.UpdateOpts{
		images.ReplaceImageName{NewName: "renamed"}, images.ReplaceImageTags{NewTags: []string{"b", "c"}},
		images.UpdateImageProperty{Op: images.AddOp, Name: "hw_disk_bus", Value: "virtio"},
	}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != "renamed" || len(img.Tags) != 2 || img.Properties["hw_disk_bus"] != "virtio" {
		t.Fatalf("updated %+v", img)
	}
	for i := 0; i < 3; i++ {
		if _, err := images.Create(ctx, sc, images.CreateOpts{Name: "more"}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	pages, err := images.List(sc, images.ListOpts{Limit: 2, Sort: "name:asc"}).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, err := images.ExtractImages(pages)
	if err != nil || len(all) != 4 {
		t.Fatalf("listed %d images (%v)", len(all), err)
	}
	info, err := imageimport.Get(ctx, sc).Extract()
	if err != nil || len(info.ImportMethods.Value) != 1 || info.ImportMethods.Value[0] != "web-download" {
		t.Fatalf("import info %+v %v", info, err)
	}
	queued := all[0].ID
	if err := imageimport.Create(ctx, sc, queued, imageimport.CreateOpts{Name: imageimport.WebDownloadMethod, URI: "https://example.com/x.img"}).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if err := images.Delete(ctx, sc, img.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if _, err := images.Get(ctx, sc, img.ID).Extract(); !gophercloud.ResponseCodeIs(err, http.StatusNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}
