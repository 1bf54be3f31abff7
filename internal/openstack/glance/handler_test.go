package glance

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi/osapitest"
	"github.com/strata-cloud/strata/internal/storage/blob"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// fakeStore is the registry's blob store, with manifests kept as blobs.
type fakeStore struct {
	blobs *blob.Store
	tags  map[string]blob.Digest
}

func (s *fakeStore) Blobs() *blob.Store { return s.blobs }

func (s *fakeStore) PutManifest(ctx context.Context, name, tag, _ string, body []byte) (blob.Digest, error) {
	info, err := s.blobs.Put(ctx, blob.FromBytes(body), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	s.tags[name+":"+tag] = info.Digest
	return info.Digest, nil
}

type env struct {
	t     *testing.T
	c     client.Client
	srv   *httptest.Server
	store *fakeStore
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	for _, ns := range []string{"p1", "p2"} {
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	// "in-use" stands for an Image a VM boots from.
	c := osapitest.Client(t, []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, storagev1.AddToScheme}, objs, interceptor.Funcs{
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if obj.GetName() == "in-use" {
				return apierrors.NewConflict(schema.GroupResource{Group: "storage.strata.io", Resource: "images"}, obj.GetName(),
					errorString("image is in use by virtual machines: vm1"))
			}
			return c.Delete(ctx, obj, opts...)
		},
	}, func(b *fake.ClientBuilder) { b.WithStatusSubresource(&storagev1.Image{}) })
	bs, err := blob.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{blobs: bs, tags: map[string]blob.Digest{}}
	h := Handler(Config{Client: c, Store: store, MaxImageBytes: 1 << 20, Authenticator: osapitest.Callers()})
	mux := http.NewServeMux()
	mux.Handle("/image/", h)
	mux.Handle("/image", h)
	e := &env{t: t, c: c, srv: httptest.NewServer(mux), store: store}
	t.Cleanup(e.srv.Close)
	return e
}

type errorString string

func (e errorString) Error() string { return string(e) }

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("%d %s: %v", r.code, r.body, err)
	}
	return out
}

// raw calls the API as token.
func (e *env) raw(token, method, path, contentType string, body io.Reader, header ...string) response {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, body)
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.Header.Get("X-Openstack-Request-Id") == "" {
		e.t.Errorf("%s %s: no x-openstack-request-id", method, path)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// must calls the API as token with a JSON body and fails unless it
// answers code.
func (e *env) must(token string, code int, method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	if method == http.MethodPatch {
		ct = patchType
	}
	r := e.raw(token, method, path, ct, rd)
	if r.code != code {
		e.t.Fatalf("%s %s: %d %s, want %d", method, path, r.code, r.body, code)
	}
	return r
}

func (e *env) create(token string, body any) map[string]any {
	e.t.Helper()
	return e.must(token, http.StatusCreated, "POST", "/image/v2/images", body).json(e.t)
}

func (e *env) image(ns, name string) *storagev1.Image {
	e.t.Helper()
	img := &storagev1.Image{}
	if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, img); err != nil {
		e.t.Fatal(err)
	}
	return img
}

func TestVersionsAndAuth(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/image", "/image/", "/image/versions"} {
		r := e.raw("", "GET", p, "", nil)
		if r.code != http.StatusOK && r.code != http.StatusMultipleChoices {
			t.Fatalf("%s: %d", p, r.code)
		}
		v := r.json(t)["versions"].([]any)[0].(map[string]any)
		if v["status"] != "CURRENT" || !strings.HasSuffix(v["links"].([]any)[0].(map[string]any)["href"].(string), "/image/v2/") {
			t.Errorf("%s: %v", p, v)
		}
	}
	if r := e.raw("", "GET", "/image/v2/images", "", nil); r.code != http.StatusUnauthorized {
		t.Errorf("no token: %d", r.code)
	}
	if r := e.raw("bogus", "GET", "/image/v2/images", "", nil); r.code != http.StatusUnauthorized || r.json(t)["error"].(map[string]any)["title"] != "Unauthorized" {
		t.Errorf("bad token: %d %s", r.code, r.body)
	}
	e.must("noscope", http.StatusForbidden, "GET", "/image/v2/images", nil)
	e.must("reader", http.StatusForbidden, "POST", "/image/v2/images", map[string]any{"name": "x"})
	if r := e.raw("", "GET", "/image/v2/schemas/image", "", nil); r.code != http.StatusOK || r.json(t)["name"] != "image" {
		t.Errorf("schema: %d %s", r.code, r.body)
	}
	e.must("member", http.StatusOK, "GET", "/image/v2/schemas/images", nil)
	imp := e.must("member", http.StatusOK, "GET", "/image/v2/info/import", nil).json(t)
	if !strings.Contains(string(must(json.Marshal(imp))), "web-download") {
		t.Errorf("info/import %v", imp)
	}
	e.must("member", http.StatusNotFound, "GET", "/image/v2/nothing", nil)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCreateUploadDownload(t *testing.T) {
	e := newEnv(t)
	img := e.create("member", map[string]any{"name": "cirros", "disk_format": "raw", "container_format": "bare", "visibility": "private",
		"owner_specified.openstack.md5": "", "tags": []string{"t1"}, "min_disk": 1})
	id := img["id"].(string)
	if img["status"] != "queued" || img["name"] != "cirros" || img["owner"] != "p1" || img["visibility"] != "private" || img["min_disk"] != 1.0 {
		t.Fatalf("created %v", img)
	}
	obj := e.image("p1", "cirros") // a free DNS label: the object's name
	if string(obj.UID) != id || obj.Status.Phase != storagev1.ImageQueued {
		t.Fatalf("object %+v", obj)
	}
	if r := e.raw("member", "GET", "/image/v2/images/"+id+"/file", "", nil); r.code != http.StatusNoContent {
		t.Fatalf("download before upload: %d", r.code)
	}

	data := diskimage.FakeQcow2(200000, 1<<30)
	r := e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
	if r.code != http.StatusNoContent {
		t.Fatalf("upload: %d %s", r.code, r.body)
	}
	sum := md5.Sum(data)
	got := e.must("member", http.StatusOK, "GET", "/image/v2/images/"+id, nil).json(t)
	if got["status"] != "active" || got["disk_format"] != "qcow2" || got["size"] != float64(len(data)) || got["virtual_size"] != float64(1<<30) ||
		got["checksum"] != hex.EncodeToString(sum[:]) || got["os_hash_algo"] != "sha512" || len(got["os_hash_value"].(string)) != 128 {
		t.Fatalf("after upload %v", got)
	}
	obj = e.image("p1", "cirros")
	if obj.Status.Phase != storagev1.ImageActive || obj.Status.Format != "qcow2" || !strings.HasPrefix(obj.Status.Reference, diskimage.Registry+"/vm-images/p1/cirros@sha256:") {
		t.Fatalf("status %+v", obj.Status)
	}
	// A second upload: 409.
	if r := e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data)); r.code != http.StatusConflict {
		t.Fatalf("second upload: %d", r.code)
	}

	r = e.raw("member", "GET", "/image/v2/images/"+id+"/file", "", nil)
	if r.code != http.StatusOK || !bytes.Equal(r.body, data) || r.header.Get("Content-MD5") != hex.EncodeToString(sum[:]) {
		t.Fatalf("download: %d, %d bytes, md5 %q", r.code, len(r.body), r.header.Get("Content-MD5"))
	}
	r = e.raw("member", "GET", "/image/v2/images/"+id+"/file", "", nil, "Range", "bytes=100-199")
	if r.code != http.StatusPartialContent || !bytes.Equal(r.body, data[100:200]) || r.header.Get("Content-Range") != "bytes 100-199/200000" {
		t.Fatalf("range: %d %q", r.code, r.header.Get("Content-Range"))
	}
	if r := e.raw("member", "GET", "/image/v2/images/"+id+"/file", "", nil, "Range", "bytes=300000-"); r.code != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("bad range: %d", r.code)
	}
	// Deactivated: the data is the admin's only.
	e.must("member", http.StatusNoContent, "POST", "/image/v2/images/"+id+"/actions/deactivate", nil)
	if s := e.must("member", http.StatusOK, "GET", "/image/v2/images/"+id, nil).json(t)["status"]; s != "deactivated" {
		t.Fatalf("status %v", s)
	}
	e.must("member", http.StatusForbidden, "GET", "/image/v2/images/"+id+"/file", nil)
	e.must("admin", http.StatusOK, "GET", "/image/v2/images/"+id+"/file", nil)
	e.must("member", http.StatusNoContent, "POST", "/image/v2/images/"+id+"/actions/reactivate", nil)
	// Errors as JSON for a client that asks for it.
	if r := e.raw("member", "GET", "/image/v2/images/nope", "", nil, "Accept", "application/json"); r.code != http.StatusNotFound || r.json(t)["title"] != "Not Found" {
		t.Fatalf("json 404: %d %s", r.code, r.body)
	}
	// Another project does not see the private image.
	e.must("other", http.StatusNotFound, "GET", "/image/v2/images/"+id, nil)
	e.must("other", http.StatusNotFound, "GET", "/image/v2/images/"+id+"/file", nil)
	e.must("other", http.StatusNotFound, "DELETE", "/image/v2/images/"+id, nil)
}

func TestUploadRefused(t *testing.T) {
	e := newEnv(t)
	id := e.create("member", map[string]any{"name": "bad one"})["id"].(string)
	// Not a disk image: 400, and the image is queued again.
	r := e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", strings.NewReader("<html>not found</html>"))
	if r.code != http.StatusBadRequest {
		t.Fatalf("html upload: %d %s", r.code, r.body)
	}
	if s := e.must("member", http.StatusOK, "GET", "/image/v2/images/"+id, nil).json(t)["status"]; s != "queued" {
		t.Fatalf("after a refused upload: %v", s)
	}
	// Over the limit.
	big := diskimage.FakeQcow2(2<<20, 1<<30)
	if r := e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(big)); r.code != http.StatusRequestEntityTooLarge {
		t.Fatalf("big upload: %d %s", r.code, r.body)
	}
	// Unknown length (chunked), within the limit: spooled, then stored.
	data := diskimage.FakeQcow2(5000, 1<<20)
	r = e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", io.MultiReader(bytes.NewReader(data)))
	if r.code != http.StatusNoContent {
		t.Fatalf("chunked upload: %d %s", r.code, r.body)
	}
	// Another project's member cannot upload into it.
	id2 := e.create("member", map[string]any{"name": "x"})["id"].(string)
	if r := e.raw("other", "PUT", "/image/v2/images/"+id2+"/file", "application/octet-stream", bytes.NewReader(data)); r.code != http.StatusNotFound {
		t.Fatalf("other's upload: %d", r.code)
	}
}

func TestNamesAndIDs(t *testing.T) {
	e := newEnv(t)
	a := e.create("member", map[string]any{"name": "dup"})
	b := e.create("member", map[string]any{"name": "dup"})
	c := e.create("member", map[string]any{"name": "Ubuntu 24.04"})
	if a["id"] == b["id"] || b["name"] != "dup" || c["name"] != "Ubuntu 24.04" {
		t.Fatalf("%v %v %v", a, b, c)
	}
	var l storagev1.ImageList
	if err := e.c.List(context.Background(), &l); err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, img := range l.Items {
		names[img.Annotations[AnnotationName]+"/"+ID(&img)] = img.Name
	}
	if names["dup/"+a["id"].(string)] != "dup" || !strings.HasPrefix(names["dup/"+b["id"].(string)], "img-") || !strings.HasPrefix(names["Ubuntu 24.04/"+c["id"].(string)], "img-") {
		t.Fatalf("object names %v", names)
	}
	fixed := "0b7d9e43-5c7a-4f35-9a51-3d1b1e1c2a10"
	if got := e.create("member", map[string]any{"name": "f", "id": fixed})["id"]; got != fixed {
		t.Fatalf("chosen id: %v", got)
	}
	e.must("member", http.StatusOK, "GET", "/image/v2/images/"+fixed, nil)
	e.must("member", http.StatusConflict, "POST", "/image/v2/images", map[string]any{"id": fixed})
	e.must("member", http.StatusBadRequest, "POST", "/image/v2/images", `{"name":`)
	e.must("member", http.StatusBadRequest, "POST", "/image/v2/images", map[string]any{"disk_format": "floppy"})
	e.must("member", http.StatusForbidden, "POST", "/image/v2/images", map[string]any{"visibility": "public"})
	e.must("member", http.StatusNotFound, "GET", "/image/v2/images/dup", nil) // names are not IDs
}

func TestListAndVisibility(t *testing.T) {
	e := newEnv(t, &storagev1.Image{ // made with kubectl, in another project
		ObjectMeta: metav1.ObjectMeta{Namespace: "p2", Name: "theirs", UID: "theirs-uid", CreationTimestamp: metav1.NewTime(time.Unix(1, 0))},
	})
	pub := e.create("admin", map[string]any{"name": "pub", "visibility": "public", "os_distro": "debian"})["id"].(string)
	e.create("member", map[string]any{"name": "mine", "tags": []string{"gold"}})
	e.create("member", map[string]any{"name": "hidden", "os_hidden": true})
	com := e.create("member", map[string]any{"name": "com", "visibility": "community"})["id"].(string)

	names := func(token, query string) []string {
		t.Helper()
		out := e.must(token, http.StatusOK, "GET", "/image/v2/images"+query, nil).json(t)
		var n []string
		for _, i := range out["images"].([]any) {
			n = append(n, i.(map[string]any)["name"].(string))
		}
		return n
	}
	eq := func(got []string, want ...string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got %v, want %v", got, want)
		}
	}
	eq(names("member", "?sort_key=name&sort_dir=asc"), "com", "mine", "pub")
	eq(names("member", "?tag=gold"), "mine")
	eq(names("member", "?os_distro=debian"), "pub")
	eq(names("member", "?os_hidden=true"), "hidden")
	eq(names("member", "?name=mine"), "mine")
	eq(names("member", "?visibility=public"), "pub")
	eq(names("other", "?sort_key=name&sort_dir=asc"), "pub", "theirs")
	eq(names("other", "?visibility=community"), "com")
	eq(names("other", "?owner=p1"), "pub")
	// Another project can read a public image but not change it.
	e.must("other", http.StatusOK, "GET", "/image/v2/images/"+pub, nil)
	e.must("other", http.StatusOK, "GET", "/image/v2/images/"+com, nil)
	e.must("other", http.StatusForbidden, "PATCH", "/image/v2/images/"+pub, `[{"op":"replace","path":"/name","value":"x"}]`)
	e.must("other", http.StatusForbidden, "DELETE", "/image/v2/images/"+pub, nil)
	e.must("member", http.StatusNotFound, "GET", "/image/v2/images/theirs-uid", nil)

	// Pages: next links through every image.
	out := e.must("member", http.StatusOK, "GET", "/image/v2/images?limit=1&sort_key=name&sort_dir=asc", nil).json(t)
	var seen []string
	for {
		for _, i := range out["images"].([]any) {
			seen = append(seen, i.(map[string]any)["name"].(string))
		}
		next, ok := out["next"].(string)
		if !ok {
			break
		}
		if !strings.HasPrefix(next, "/v2/images?") {
			t.Fatalf("next %q", next)
		}
		out = e.must("member", http.StatusOK, "GET", "/image"+next, nil).json(t)
	}
	eq(seen, "com", "mine", "pub")
	e.must("member", http.StatusBadRequest, "GET", "/image/v2/images?sort_key=bogus", nil)
}

func TestPatchTagsDelete(t *testing.T) {
	e := newEnv(t)
	img := e.create("member", map[string]any{"name": "a", "os_distro": "x"})
	id := img["id"].(string)
	path := "/image/v2/images/" + id
	if r := e.raw("member", "PATCH", path, "application/json", strings.NewReader(`[]`)); r.code != http.StatusUnsupportedMediaType {
		t.Fatalf("json patch as application/json: %d", r.code)
	}
	got := e.must("member", http.StatusOK, "PATCH", path, `[{"op":"replace","path":"/name","value":"renamed"},{"op":"add","path":"/hw_qemu_guest_agent","value":"yes"},{"op":"remove","path":"/os_distro"},{"op":"replace","path":"/protected","value":true}]`).json(t)
	if got["name"] != "renamed" || got["hw_qemu_guest_agent"] != "yes" || got["os_distro"] != nil || got["protected"] != true {
		t.Fatalf("patched %v", got)
	}
	if n := e.image("p1", "a").Annotations[AnnotationName]; n != "renamed" {
		t.Fatalf("annotation %q", n)
	}
	e.must("member", http.StatusConflict, "PATCH", path, `[{"op":"remove","path":"/nope"}]`)
	e.must("member", http.StatusForbidden, "PATCH", path, `[{"op":"replace","path":"/size","value":1}]`)
	e.must("member", http.StatusBadRequest, "PATCH", path, `{"op":"x"}`)
	e.must("reader", http.StatusForbidden, "PATCH", path, `[]`)

	e.must("member", http.StatusNoContent, "PUT", path+"/tags/blue", nil)
	e.must("member", http.StatusNoContent, "PUT", path+"/tags/blue", nil)
	e.must("member", http.StatusNoContent, "PUT", path+"/tags/red", nil)
	e.must("member", http.StatusNoContent, "DELETE", path+"/tags/blue", nil)
	e.must("member", http.StatusNotFound, "DELETE", path+"/tags/blue", nil)
	if tags := e.must("member", http.StatusOK, "GET", path, nil).json(t)["tags"]; len(tags.([]any)) != 1 {
		t.Fatalf("tags %v", tags)
	}

	// Protected: 403; unprotected: deleted.
	e.must("member", http.StatusForbidden, "DELETE", path, nil)
	e.must("member", http.StatusOK, "PATCH", path, `[{"op":"replace","path":"/protected","value":false}]`)
	e.must("member", http.StatusNoContent, "DELETE", path, nil)
	e.must("member", http.StatusNotFound, "GET", path, nil)
	e.must("member", http.StatusNotFound, "DELETE", path, nil)

	// In use by a VM: the admission's 409.
	inUse := e.create("member", map[string]any{"name": "in-use"})["id"].(string)
	r := e.must("member", http.StatusConflict, "DELETE", "/image/v2/images/"+inUse, nil)
	if !strings.Contains(string(r.body), "in use") {
		t.Errorf("409 body %s", r.body)
	}
}

func TestImport(t *testing.T) {
	e := newEnv(t)
	id := e.create("member", map[string]any{"name": "web", "disk_format": "qcow2", "container_format": "bare"})["id"].(string)
	path := "/image/v2/images/" + id + "/import"
	e.must("member", http.StatusBadRequest, "POST", path, map[string]any{"method": map[string]any{"name": "glance-direct"}})
	e.must("member", http.StatusBadRequest, "POST", path, map[string]any{"method": map[string]any{"name": "web-download", "uri": "file:///etc/passwd"}})
	e.must("member", http.StatusAccepted, "POST", path, map[string]any{"method": map[string]any{"name": "web-download", "uri": "https://example.com/cirros.img"}})
	obj := e.image("p1", "web")
	if obj.Spec.Source == nil || obj.Spec.Source.URL != "https://example.com/cirros.img" {
		t.Fatalf("spec %+v", obj.Spec)
	}
	if s := e.must("member", http.StatusOK, "GET", "/image/v2/images/"+id, nil).json(t)["status"]; s != "importing" {
		t.Fatalf("status %v", s)
	}
	e.must("member", http.StatusConflict, "POST", path, map[string]any{"method": map[string]any{"name": "web-download", "uri": "https://example.com/b.img"}})
	if r := e.raw("member", "PUT", "/image/v2/images/"+id+"/file", "application/octet-stream", strings.NewReader("x")); r.code != http.StatusConflict {
		t.Fatalf("upload into an importing image: %d", r.code)
	}
}
