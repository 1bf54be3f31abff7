package glance

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func code(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return -1
}

func TestNewImage(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		admin bool
		code  int
		check func(*testing.T, *storagev1.Image)
	}{
		{"full", `{"name":"cirros 0.6","disk_format":"qcow2","container_format":"bare","min_disk":1,"min_ram":64,"tags":["a","b","a"],"protected":true,"os_distro":"cirros","description":"tiny"}`, false, 0,
			func(t *testing.T, img *storagev1.Image) {
				m := readModel(img)
				if *m.Name != "cirros 0.6" || m.DiskFormat != "qcow2" || m.ContainerFormat != "bare" || m.MinDisk != 1 || m.MinRAM != 64 || !m.Protected {
					t.Errorf("model %+v", m)
				}
				if !reflect.DeepEqual(m.Tags, []string{"a", "b"}) || m.Props["os_distro"] != "cirros" || img.Spec.Description != "tiny" || img.Spec.MinDiskGiB != 1 {
					t.Errorf("tags %v props %v spec %+v", m.Tags, m.Props, img.Spec)
				}
				if m.Visibility != "shared" {
					t.Errorf("default visibility %q, want shared", m.Visibility)
				}
			}},
		{"id", `{"name":"x","id":"6D2B5D1C-1111-2222-3333-444455556666"}`, false, 0, func(t *testing.T, img *storagev1.Image) {
			if ID(img) != "6d2b5d1c-1111-2222-3333-444455556666" {
				t.Errorf("ID %q", ID(img))
			}
		}},
		{"own owner", `{"name":"x","owner":"p1"}`, false, 0, nil},
		{"other owner", `{"name":"x","owner":"p2"}`, false, http.StatusForbidden, nil},
		{"bad id", `{"id":"nope"}`, false, http.StatusBadRequest, nil},
		{"not an object", `[1]`, false, http.StatusBadRequest, nil},
		{"malformed", `{"name":`, false, http.StatusBadRequest, nil},
		{"unknown disk format", `{"disk_format":"floppy"}`, false, http.StatusBadRequest, nil},
		{"read-only", `{"status":"active"}`, false, http.StatusForbidden, nil},
		{"public needs admin", `{"visibility":"public"}`, false, http.StatusForbidden, nil},
		{"public by admin", `{"visibility":"public"}`, true, 0, nil},
		{"community", `{"visibility":"community"}`, false, 0, nil},
		{"non-string property", `{"foo":1}`, false, http.StatusBadRequest, nil},
		{"negative min_ram", `{"min_ram":-1}`, false, http.StatusBadRequest, nil},
		{"null name", `{"name":null}`, false, 0, func(t *testing.T, img *storagev1.Image) {
			if v := View(img, "p1"); v["name"] != nil {
				t.Errorf("name %v", v["name"])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := NewImage([]byte(tc.body), "p1", "p1", tc.admin)
			if code(err) != tc.code {
				t.Fatalf("err %v, want code %d", err, tc.code)
			}
			if err == nil && tc.check != nil {
				tc.check(t, img)
			}
		})
	}
}

func TestView(t *testing.T) {
	created := metav1.Unix(1700000000, 0)
	kubectl := &storagev1.Image{
		ObjectMeta: metav1.ObjectMeta{Name: "ubuntu", Namespace: "p1", UID: "u-1", CreationTimestamp: created},
		Status: storagev1.ImageStatus{Phase: storagev1.ImageActive, Format: "qcow2", SizeBytes: 10, VirtualSizeBytes: 100,
			Checksum: "abc", Reference: "images.strata.invalid/vm-images/p1/ubuntu@sha256:00"},
	}
	v := View(kubectl, "p1")
	want := map[string]any{"id": "u-1", "name": "ubuntu", "status": "active", "visibility": "private", "disk_format": "qcow2",
		"container_format": "bare", "size": int64(10), "virtual_size": int64(100), "checksum": nil, "os_hash_algo": "sha256",
		"os_hash_value": "abc", "owner": "p1", "created_at": "2023-11-14T22:13:20Z", "self": "/v2/images/u-1", "file": "/v2/images/u-1/file"}
	for k, w := range want {
		if !reflect.DeepEqual(v[k], w) {
			t.Errorf("%s = %#v, want %#v", k, v[k], w)
		}
	}

	glance := kubectl.DeepCopy()
	glance.Name = "img-1"
	glance.Annotations = map[string]string{AnnotationName: "Ubuntu 24.04", AnnotationMD5: "m", AnnotationSHA512: "s",
		AnnotationProperties: `{"os_distro":"ubuntu"}`, AnnotationTags: `["lts"]`, AnnotationVisibility: "public", AnnotationDeactivated: "true"}
	v = View(glance, "p1")
	if v["name"] != "Ubuntu 24.04" || v["checksum"] != "m" || v["os_hash_algo"] != "sha512" || v["os_hash_value"] != "s" ||
		v["os_distro"] != "ubuntu" || !reflect.DeepEqual(v["tags"], []string{"lts"}) || v["status"] != "deactivated" || v["visibility"] != "public" {
		t.Errorf("view %v", v)
	}
	if _, err := json.Marshal(v); err != nil {
		t.Fatal(err)
	}

	queued := &storagev1.Image{ObjectMeta: metav1.ObjectMeta{Name: "q", UID: "u-2"}}
	v = View(queued, "p1")
	if v["status"] != "queued" || v["size"] != nil || v["disk_format"] != nil || v["os_hash_value"] != nil {
		t.Errorf("queued view %v", v)
	}
	for phase, status := range map[storagev1.ImagePhase]string{storagev1.ImageSaving: "saving", storagev1.ImageImporting: "importing", storagev1.ImageError: "killed", "": "queued"} {
		queued.Status.Phase = phase
		if got := Status(queued); got != status {
			t.Errorf("phase %q: status %q, want %q", phase, got, status)
		}
	}
}

func TestApplyPatch(t *testing.T) {
	base := func() *storagev1.Image {
		img, err := NewImage([]byte(`{"name":"a","disk_format":"raw","tags":["x"],"os_distro":"debian"}`), "p1", "p1", false)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	active := func() *storagev1.Image {
		img := base()
		img.Status = storagev1.ImageStatus{Phase: storagev1.ImageActive, Reference: "r@sha256:00"}
		return img
	}
	for _, tc := range []struct {
		name  string
		img   func() *storagev1.Image
		ops   string
		admin bool
		code  int
		check func(*testing.T, model)
	}{
		{"rename and add", base, `[{"op":"replace","path":"/name","value":"b"},{"op":"add","path":"/hw_disk_bus","value":"virtio"},{"op":"replace","path":"/min_ram","value":512}]`, false, 0,
			func(t *testing.T, m model) {
				if *m.Name != "b" || m.Props["hw_disk_bus"] != "virtio" || m.MinRAM != 512 {
					t.Errorf("%+v", m)
				}
			}},
		{"remove property", base, `[{"op":"remove","path":"/os_distro"}]`, false, 0, func(t *testing.T, m model) {
			if _, ok := m.Props["os_distro"]; ok {
				t.Error("os_distro kept")
			}
		}},
		{"replace tags", base, `[{"op":"replace","path":"/tags","value":["y","z"]}]`, false, 0, func(t *testing.T, m model) {
			if !reflect.DeepEqual(m.Tags, []string{"y", "z"}) {
				t.Errorf("tags %v", m.Tags)
			}
		}},
		{"append tag", base, `[{"op":"add","path":"/tags/-","value":"y"}]`, false, 0, func(t *testing.T, m model) {
			if !reflect.DeepEqual(m.Tags, []string{"x", "y"}) {
				t.Errorf("tags %v", m.Tags)
			}
		}},
		{"description to spec", base, `[{"op":"add","path":"/description","value":"hello"}]`, false, 0, func(t *testing.T, m model) {
			if m.Props["description"] != "hello" {
				t.Errorf("props %v", m.Props)
			}
		}},
		{"remove missing", base, `[{"op":"remove","path":"/nope"}]`, false, http.StatusConflict, nil},
		{"replace missing", base, `[{"op":"replace","path":"/nope","value":"v"}]`, false, http.StatusConflict, nil},
		{"remove base", base, `[{"op":"remove","path":"/name"}]`, false, http.StatusForbidden, nil},
		{"read-only", base, `[{"op":"replace","path":"/status","value":"active"}]`, false, http.StatusForbidden, nil},
		{"publicize", base, `[{"op":"replace","path":"/visibility","value":"public"}]`, false, http.StatusForbidden, nil},
		{"publicize admin", base, `[{"op":"replace","path":"/visibility","value":"public"}]`, true, 0, nil},
		{"disk_format of active", active, `[{"op":"replace","path":"/disk_format","value":"qcow2"}]`, false, http.StatusForbidden, nil},
		{"bad op", base, `[{"op":"move","path":"/name"}]`, false, http.StatusBadRequest, nil},
		{"no value", base, `[{"op":"add","path":"/foo"}]`, false, http.StatusBadRequest, nil},
		{"bad pointer", base, `[{"op":"add","path":"name","value":"x"}]`, false, http.StatusBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ops []PatchOp
			if err := json.Unmarshal([]byte(tc.ops), &ops); err != nil {
				t.Fatal(err)
			}
			img := tc.img()
			err := ApplyPatch(img, ops, tc.admin)
			if code(err) != tc.code {
				t.Fatalf("err %v, want code %d", err, tc.code)
			}
			if err == nil && tc.check != nil {
				tc.check(t, readModel(img))
			}
		})
	}
}

func TestKubeName(t *testing.T) {
	taken := func(n string) bool { return n == "used" }
	for name, want := range map[string]string{"cirros": "cirros", "Cirros": "img-abc", "a b": "img-abc", "used": "img-abc", "": "img-abc",
		"x.y": "img-abc"} {
		if got := KubeName(name, "abc", taken); got != want {
			t.Errorf("KubeName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestListQuery(t *testing.T) {
	views := []map[string]any{
		{"id": "1", "name": "a", "status": "active", "visibility": "private", "os_hidden": false, "protected": false, "tags": []string{"x"}, "size": int64(5), "created_at": "2024-01-01T00:00:00Z", "os_distro": "debian", "owner": "p1"},
		{"id": "2", "name": "b", "status": "queued", "visibility": "public", "os_hidden": false, "protected": true, "tags": []string{}, "size": nil, "created_at": "2024-01-02T00:00:00Z", "owner": "p2"},
		{"id": "3", "name": "c", "status": "active", "visibility": "community", "os_hidden": false, "protected": false, "tags": []string{"x", "y"}, "size": int64(50), "created_at": "2024-01-03T00:00:00Z", "owner": "p2"},
		{"id": "4", "name": "d", "status": "active", "visibility": "private", "os_hidden": true, "protected": false, "tags": []string{}, "size": int64(1), "created_at": "2024-01-04T00:00:00Z", "owner": "p1"},
	}
	own := map[string]bool{"1": true, "4": true}
	run := func(query string) ([]string, error) {
		v, _ := url.ParseQuery(query)
		q, err := ParseListQuery(v)
		if err != nil {
			return nil, err
		}
		var out []map[string]any
		for _, x := range views {
			if q.Match(x, own[x["id"].(string)]) {
				out = append(out, x)
			}
		}
		q.Sort(out)
		page, _, err := q.Page(out)
		var ids []string
		for _, p := range page {
			ids = append(ids, p["id"].(string))
		}
		return ids, err
	}
	for _, tc := range []struct {
		query string
		want  []string
		code  int
	}{
		{"", []string{"2", "1"}, 0}, // newest first; community of others and hidden left out
		{"visibility=community", []string{"3"}, 0},
		{"visibility=all&sort_key=name&sort_dir=asc", []string{"1", "2", "3"}, 0},
		{"os_hidden=true", []string{"4"}, 0},
		{"name=a", []string{"1"}, 0},
		{"name=in:a,b&sort=name:asc", []string{"1", "2"}, 0},
		{"status=queued", []string{"2"}, 0},
		{"owner=p2", []string{"2"}, 0},
		{"tag=x&visibility=all", []string{"3", "1"}, 0},
		{"tag=x&tag=y&visibility=all", []string{"3"}, 0},
		{"os_distro=debian", []string{"1"}, 0},
		{"protected=true", []string{"2"}, 0},
		{"size_min=2&visibility=all", []string{"3", "1"}, 0},
		{"visibility=all&sort_key=size&sort_dir=desc", []string{"3", "1", "2"}, 0},
		{"visibility=all&sort_key=name&sort_dir=asc&limit=2", []string{"1", "2"}, 0},
		{"visibility=all&sort_key=name&sort_dir=asc&limit=2&marker=2", []string{"3"}, 0},
		{"marker=nope", nil, http.StatusBadRequest},
		{"sort_key=bogus", nil, http.StatusBadRequest},
		{"sort_dir=up", nil, http.StatusBadRequest},
		{"limit=x", nil, http.StatusBadRequest},
		{"visibility=everyone", nil, http.StatusBadRequest},
	} {
		got, err := run(tc.query)
		if code(err) != tc.code {
			t.Errorf("%q: err %v, want code %d", tc.query, err, tc.code)
			continue
		}
		if err == nil && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q: %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		h                string
		start, end       int64
		whole, satisfied bool
	}{
		{"", 0, 99, true, true},
		{"bytes=0-9", 0, 9, false, true},
		{"bytes=90-", 90, 99, false, true},
		{"bytes=90-200", 90, 99, false, true},
		{"bytes=-10", 90, 99, false, true},
		{"bytes=100-", 0, 0, false, false},
		{"bytes=5-1", 0, 0, false, false},
		{"bytes=0-1,5-6", 0, 99, true, true},
		{"items=1-2", 0, 99, true, true},
	} {
		s, e, w, ok := ParseRange(tc.h, 100)
		if ok != tc.satisfied || (ok && (s != tc.start || e != tc.end || w != tc.whole)) {
			t.Errorf("%q: %d-%d whole %v ok %v", tc.h, s, e, w, ok)
		}
	}
}
