package ociimage

import (
	"archive/tar"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/strata-cloud/strata/internal/storage/registry"
)

func testImage(t *testing.T, content string) v1.Image {
	t.Helper()
	img, err := FromFiles([]File{{Path: "/hello", Content: []byte(content)}}, ConfigOptions{Cmd: []string{"/hello"}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func refNames(a *Archive) []string {
	var names []string
	for _, ai := range a.Images {
		if ai.Ref == nil {
			names = append(names, "<none>")
			continue
		}
		names = append(names, ai.Ref.String())
	}
	slices.Sort(names)
	return names
}

func TestOpenDockerArchive(t *testing.T) {
	dir := t.TempDir()
	img := testImage(t, "one")
	single := filepath.Join(dir, "single.tar")
	if err := WriteTarball(single, "docker.io/library/busybox:1.36", img); err != nil {
		t.Fatal(err)
	}
	a, err := OpenArchive(single)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := refNames(a); !slices.Equal(got, []string{"docker.io/library/busybox:1.36"}) {
		t.Fatalf("names %v", got)
	}
	// The image read back has the layers and config that were written.
	want, _ := img.ConfigName()
	if got, err := a.Images[0].Image.ConfigName(); err != nil || got != want {
		t.Errorf("config %s (%v), want %s", got, err, want)
	}

	// One image under two tags, another under a third.
	multi := filepath.Join(dir, "multi.tar")
	f, err := os.Create(multi)
	if err != nil {
		t.Fatal(err)
	}
	refs := map[name.Reference]v1.Image{
		name.MustParseReference("registry.example/app:1"): img,
		name.MustParseReference("registry.example/app:2"): img,
		name.MustParseReference("ghcr.io/team/tool:v3"):   testImage(t, "two"),
	}
	if err := tarball.MultiRefWrite(refs, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := OpenArchive(multi)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if got, want := refNames(b), []string{"ghcr.io/team/tool:v3", "registry.example/app:1", "registry.example/app:2"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
}

// writeTar archives dir's files (as `ctr images export` would lay them out).
func writeTar(t *testing.T, dir, out string, extra ...tar.Header) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, h := range extra {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
	}
	if dir != "" {
		if err := tw.AddFS(os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenOCIArchive(t *testing.T) {
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img := testImage(t, "oci")
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		annotationContainerdName: "registry.example/app:1",
		annotationRefName:        "1",
	})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendIndex(idx, layout.WithAnnotations(map[string]string{annotationRefName: "docker.io/team/multi:2"})); err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "latest"})); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "oci.tar")
	writeTar(t, string(lp), archive)

	a, err := OpenArchive(archive)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := refNames(a), []string{"<none>", "docker.io/team/multi:2", "registry.example/app:1"}; !slices.Equal(got, want) {
		t.Errorf("names %v, want %v", got, want)
	}
	for _, ai := range a.Images {
		if (ai.Image == nil) == (ai.Index == nil) {
			t.Errorf("%v: want exactly one of image and index", ai.Ref)
		}
		if ai.Ref != nil && strings.Contains(ai.Ref.String(), "multi") && ai.Index == nil {
			t.Errorf("the index was read as an image")
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.tmpDir); !os.IsNotExist(err) {
		t.Errorf("Close left %s behind", a.tmpDir)
	}
}

func TestOpenArchiveRejects(t *testing.T) {
	dir := t.TempDir()
	notTar := filepath.Join(dir, "not.tar")
	os.WriteFile(notTar, []byte("hello, not a tar archive at all, sorry ..........................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."), 0o644)
	if _, err := OpenArchive(notTar); err == nil {
		t.Errorf("a file that is not a tar was accepted")
	}
	noIndex := filepath.Join(dir, "empty.tar")
	writeTar(t, "", noIndex, tar.Header{Name: "hello.txt", Typeflag: tar.TypeReg, Mode: 0o644})
	if _, err := OpenArchive(noIndex); err == nil || !strings.Contains(err.Error(), "neither a docker archive") {
		t.Errorf("a tar with no index: %v", err)
	}
	escape := filepath.Join(dir, "escape.tar")
	writeTar(t, "", escape,
		tar.Header{Name: "index.json", Typeflag: tar.TypeReg, Mode: 0o644},
		tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644})
	if _, err := OpenArchive(escape); err == nil || !strings.Contains(err.Error(), "outside the archive") {
		t.Errorf("an entry outside the archive: %v", err)
	}
	if _, err := os.Stat(filepath.Join(os.TempDir(), "evil")); err == nil {
		t.Errorf("an archive entry escaped")
	}
}

func TestMirrorRef(t *testing.T) {
	for src, want := range map[string]string{
		"docker.io/library/busybox:1.36":   "127.0.0.1:5000/library/busybox:1.36",
		"busybox":                          "127.0.0.1:5000/library/busybox:latest",
		"registry.invalid/strata/pushed:1": "127.0.0.1:5000/strata/pushed:1",
		"ghcr.io/a/b/c:v1":                 "127.0.0.1:5000/a/b/c:v1",
		"registry.example:8443/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef": "127.0.0.1:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	} {
		ref, err := name.ParseReference(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := MirrorRef(ref, "127.0.0.1:5000")
		if err != nil || got.String() != want {
			t.Errorf("MirrorRef(%s) = %v (%v), want %s", src, got, err, want)
		}
	}
}

func TestPushArchiveImages(t *testing.T) {
	reg, err := registry.New(t.TempDir(), registry.Options{Authorizer: registry.AllowAll{}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	rt := srv.Client().Transport

	img := testImage(t, "pushed")
	idx, err := random.Index(256, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range []ArchiveImage{
		{Ref: name.MustParseReference("registry.invalid/strata/pushed:1"), Image: img},
		{Ref: name.MustParseReference("docker.io/team/multi:2"), Index: idx},
	} {
		dst, err := MirrorRef(ai.Ref, host)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Push(context.Background(), ai, dst, rt)
		if err != nil {
			t.Fatalf("push %s: %v", dst, err)
		}
		desc, err := remote.Head(dst, remote.WithTransport(rt))
		if err != nil {
			t.Fatalf("pulling back %s: %v", dst, err)
		}
		if desc.Digest != got {
			t.Errorf("%s: registry has %s, Push returned %s", dst, desc.Digest, got)
		}
	}
	nothing, err := name.ParseReference(host + "/x:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Push(context.Background(), ArchiveImage{}, nothing, rt); err == nil {
		t.Errorf("pushing nothing succeeded")
	}
}
