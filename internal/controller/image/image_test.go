package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
	"github.com/strata-cloud/strata/internal/storage/registry"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileServer serves files by path on loopback; "chunked" paths omit
// Content-Length.
func fileServer(t *testing.T, files map[string][]byte) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !strings.Contains(r.URL.Path, "chunked") {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		w.Write(data[:len(data)/2])
		w.(http.Flusher).Flush()
		w.Write(data[len(data)/2:])
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	reg, err := registry.New(t.TempDir(), registry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// diskOf pulls the artifact at reference out of reg over HTTP, as a node
// would, and returns the disk file inside it.
func diskOf(t *testing.T, reg *registry.Registry, reference string) []byte {
	t.Helper()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref, err := name.NewDigest(strings.Replace(reference, diskimage.Registry, host, 1), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	rc, _, err := diskimage.ReadDisk(img)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	// The config's diff ID is the digest of the layer's tar, as pullers check.
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if diff, _ := layers[0].DiffID(); len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != diff {
		t.Errorf("config diff IDs %v, layer diff ID %v", cfg.RootFS.DiffIDs, diff)
	}
	return data
}

func TestImportImage(t *testing.T) {
	disk := diskimage.FakeQcow2(300_000, 1<<30)
	srv := fileServer(t, map[string][]byte{
		"/disk.qcow2":         disk,
		"/chunked/disk.qcow2": disk,
		"/page.html":          []byte("<!DOCTYPE html><html><body>download here</body></html>"),
		"/disk.iso":           append(make([]byte, 0x8001), []byte("CD001....")...),
	})
	sum := sha256Hex(disk)
	for _, path := range []string{"/disk.qcow2", "/chunked/disk.qcow2"} {
		t.Run(path, func(t *testing.T) {
			reg := newRegistry(t)
			var p progress
			got, err := importImage(context.Background(), srv.Client(), reg, "demo", "debian", source{url: srv.URL + path, checksum: "sha256:" + sum}, &p)
			if err != nil {
				t.Fatal(err)
			}
			if got.info.Format != "qcow2" || got.info.Size != int64(len(disk)) || got.info.VirtualSize != 1<<30 || got.checksum != sum {
				t.Errorf("imported %+v, want qcow2 of %d bytes, sha256 %s", got, len(disk), sum)
			}
			if !strings.HasPrefix(got.reference, "images.strata.invalid/vm-images/demo/debian@sha256:") {
				t.Errorf("reference %q", got.reference)
			}
			if p.done.Load() != int64(len(disk)) || p.total.Load() != int64(len(disk)) {
				t.Errorf("progress %d of %d, want %d of %d", p.done.Load(), p.total.Load(), len(disk), len(disk))
			}
			if !bytes.Equal(diskOf(t, reg, got.reference), disk) {
				t.Error("the stored disk differs from the served one")
			}
		})
	}

	for _, c := range []struct{ name, path, checksum, want string }{
		{"missing", "/nope.qcow2", "", "HTTP 404 Not Found"},
		{"mismatch", "/disk.qcow2", "sha256:" + strings.Repeat("0", 64), "checksum mismatch: expected sha256:" + strings.Repeat("0", 64) + ", got sha256:" + sum},
		{"html", "/page.html", "", "not a disk image: the content is an HTML page"},
		{"iso", "/disk.iso", "", "the image format is iso: VMs boot raw or qcow2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			reg := newRegistry(t)
			_, err := importImage(context.Background(), srv.Client(), reg, "demo", "debian", source{url: srv.URL + c.path, checksum: c.checksum}, &progress{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("import: %v, want an error containing %q", err, c.want)
			}
			// Nothing stored, nothing left over.
			n, _, err := reg.Blobs().Usage(context.Background())
			if err != nil || n != 0 {
				t.Errorf("%d blobs stored after a failed import (%v)", n, err)
			}
			if left, _ := reg.Blobs().PurgeUploads(context.Background(), time.Now().Add(time.Hour)); left != 0 {
				t.Errorf("%d uploads left behind", left)
			}
		})
	}
}

func newReconciler(t *testing.T, objs ...client.Object) (*Reconciler, client.Client, *registry.Registry) {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := storagev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&storagev1alpha1.Image{}).WithObjects(objs...).Build()
	reg := newRegistry(t)
	return &Reconciler{Client: c, Store: reg, ProgressInterval: 10 * time.Millisecond}, c, reg
}

func reconcileImage(t *testing.T, r *Reconciler, c client.Client, ns, name string) *storagev1alpha1.Image {
	t.Helper()
	key := client.ObjectKey{Namespace: ns, Name: name}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	img := &storagev1alpha1.Image{}
	if err := c.Get(context.Background(), key, img); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestReconcileImport(t *testing.T) {
	disk := diskimage.FakeQcow2(100_000, 1<<30)
	srv := fileServer(t, map[string][]byte{"/disk.qcow2": disk})
	img := &storagev1alpha1.Image{
		ObjectMeta: metav1.ObjectMeta{Name: "debian", Namespace: "demo", Generation: 1},
		Spec:       storagev1alpha1.ImageSpec{Source: &storagev1alpha1.ImageSource{URL: srv.URL + "/disk.qcow2"}},
	}
	r, c, _ := newReconciler(t, img)
	got := reconcileImage(t, r, c, "demo", "debian")
	st := got.Status
	if st.Phase != storagev1alpha1.ImageActive || st.Format != "qcow2" || st.Checksum != sha256Hex(disk) || st.Progress != "100%" ||
		st.ImportedBytes != int64(len(disk)) || st.ObservedGeneration != got.Generation || st.Message != "" || st.Reference == "" {
		t.Errorf("status %+v, want Active qcow2 with checksum, reference and 100%%", st)
	}
	// Done for this generation: a second reconcile leaves it be.
	if again := reconcileImage(t, r, c, "demo", "debian"); again.Status != st {
		t.Errorf("status changed on a second reconcile: %+v", again.Status)
	}

	// A changed source is imported again; its failure is the status.
	got.Spec.Source.URL = srv.URL + "/gone.qcow2"
	got.Generation++
	if err := c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	failed := reconcileImage(t, r, c, "demo", "debian").Status
	if failed.Phase != storagev1alpha1.ImageError || !strings.Contains(failed.Message, "HTTP 404 Not Found") || failed.Reference != "" || failed.Progress != "" {
		t.Errorf("status %+v, want Error naming HTTP 404 and nothing else", failed)
	}
}

// staleClient reads an old copy of the object, as a lagging cache does.
type staleClient struct {
	client.Client
	old *storagev1alpha1.Image
}

func (c staleClient) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	c.old.DeepCopyInto(obj.(*storagev1alpha1.Image))
	return nil
}

func TestReconcileStaleRead(t *testing.T) {
	disk := diskimage.FakeQcow2(100_000, 1<<30)
	served := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served++
		w.Write(disk)
	}))
	t.Cleanup(srv.Close)
	img := &storagev1alpha1.Image{
		ObjectMeta: metav1.ObjectMeta{Name: "debian", Namespace: "demo", Generation: 1},
		Spec:       storagev1alpha1.ImageSpec{Source: &storagev1alpha1.ImageSource{URL: srv.URL + "/disk.qcow2"}},
	}
	r, c, _ := newReconciler(t, img)
	stale := &storagev1alpha1.Image{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(img), stale); err != nil {
		t.Fatal(err)
	}
	done := reconcileImage(t, r, c, "demo", "debian")
	// A reconcile that still sees the Image before its import must not
	// import it again over the finished one.
	r.Client = staleClient{c, stale}
	if _, err := r.Reconcile(context.Background(), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(img)}); err == nil {
		t.Error("a reconcile on a stale read went ahead")
	}
	after := &storagev1alpha1.Image{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(img), after); err != nil {
		t.Fatal(err)
	}
	if served != 1 || after.Status != done.Status {
		t.Errorf("downloaded %d times; status %+v, want %+v", served, after.Status, done.Status)
	}
}

func TestReconcileUploadedChecksum(t *testing.T) {
	want := "sha256:" + strings.Repeat("a", 64)
	img := &storagev1alpha1.Image{
		ObjectMeta: metav1.ObjectMeta{Name: "up", Namespace: "demo"},
		Spec:       storagev1alpha1.ImageSpec{Source: &storagev1alpha1.ImageSource{Checksum: want}},
		Status:     storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageActive, Checksum: strings.Repeat("a", 64), Reference: "x"},
	}
	r, c, _ := newReconciler(t, img)
	if st := reconcileImage(t, r, c, "demo", "up").Status; st.Phase != storagev1alpha1.ImageActive {
		t.Errorf("matching checksum: status %+v, want Active", st)
	}
	got := reconcileImage(t, r, c, "demo", "up")
	got.Status.Checksum = strings.Repeat("b", 64)
	if err := c.Status().Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	st := reconcileImage(t, r, c, "demo", "up").Status
	if st.Phase != storagev1alpha1.ImageError || !strings.Contains(st.Message, "checksum mismatch: expected "+want+", got sha256:"+strings.Repeat("b", 64)) {
		t.Errorf("mismatching checksum: status %+v, want Error naming both", st)
	}
}

func TestProgressText(t *testing.T) {
	for _, c := range []struct {
		done, total int64
		want        string
	}{{0, 100, "0%"}, {37, 100, "37%"}, {100, 100, "100%"}, {5 << 20, -1, "5 MiB"}} {
		if got := progressText(c.done, c.total); got != c.want {
			t.Errorf("progressText(%d, %d) = %q, want %q", c.done, c.total, got, c.want)
		}
	}
}
