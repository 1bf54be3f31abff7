package cinder

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func q(s string) *resource.Quantity { v := resource.MustParse(s); return &v }

func TestVolumeStatus(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		name string
		v    storagev1.Volume
		want string
	}{
		{"new", storagev1.Volume{}, "creating"},
		{"creating", storagev1.Volume{Status: storagev1.VolumeStatus{Phase: storagev1.VolumeCreating}}, "creating"},
		{"available", storagev1.Volume{Spec: storagev1.VolumeSpec{Size: *q("1Gi")}, Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable, Size: q("1Gi")}}, "available"},
		{"in-use", storagev1.Volume{Status: storagev1.VolumeStatus{Phase: storagev1.VolumeInUse}}, "in-use"},
		{"attached", storagev1.Volume{Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable, Attachments: []storagev1.VolumeAttachment{{Kind: "Pod", Name: "p"}}}}, "in-use"},
		{"extending", storagev1.Volume{Spec: storagev1.VolumeSpec{Size: *q("2Gi")}, Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable, Size: q("1Gi")}}, "extending"},
		{"error", storagev1.Volume{Status: storagev1.VolumeStatus{Phase: storagev1.VolumeError}}, "error"},
		{"deleting", storagev1.Volume{Status: storagev1.VolumeStatus{Phase: storagev1.VolumeDeleting}}, "deleting"},
		{"deleted", storagev1.Volume{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}, Status: storagev1.VolumeStatus{Phase: storagev1.VolumeAvailable}}, "deleting"},
	} {
		if got := VolumeStatus(&tc.v); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestSnapshotStatus(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		s    storagev1.VolumeSnapshot
		want string
	}{
		{storagev1.VolumeSnapshot{}, "creating"},
		{storagev1.VolumeSnapshot{Status: storagev1.VolumeSnapshotStatus{Phase: storagev1.SnapshotAvailable}}, "available"},
		{storagev1.VolumeSnapshot{Status: storagev1.VolumeSnapshotStatus{Phase: storagev1.SnapshotError}}, "error"},
		{storagev1.VolumeSnapshot{Status: storagev1.VolumeSnapshotStatus{Phase: storagev1.SnapshotDeleting}}, "deleting"},
		{storagev1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, "deleting"},
	} {
		if got := SnapshotStatus(&tc.s); got != tc.want {
			t.Errorf("%+v: %s, want %s", tc.s.Status, got, tc.want)
		}
	}
}

func TestBootable(t *testing.T) {
	img := &storagev1.VolumeSource{Image: "cirros"}
	for _, tc := range []struct {
		ann  string
		src  *storagev1.VolumeSource
		want bool
	}{
		{"", nil, false}, {"", img, true}, {"false", img, false}, {"true", nil, true},
		{"", &storagev1.VolumeSource{Snapshot: "s"}, false},
	} {
		v := &storagev1.Volume{Spec: storagev1.VolumeSpec{Source: tc.src}}
		if tc.ann != "" {
			v.Annotations = map[string]string{AnnotationBootable: tc.ann}
		}
		if got := Bootable(v); got != tc.want {
			t.Errorf("%q %+v: %v", tc.ann, tc.src, got)
		}
	}
}

func TestChooseNode(t *testing.T) {
	node := func(name string, ready, cordoned bool) corev1.Node {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: cordoned},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
	}
	vol := func(node string) storagev1.Volume { return storagev1.Volume{Spec: storagev1.VolumeSpec{Node: node}} }
	for _, tc := range []struct {
		name  string
		nodes []corev1.Node
		vols  []storagev1.Volume
		want  string
	}{
		{"none", nil, nil, ""},
		{"not ready", []corev1.Node{node("a", false, false)}, nil, ""},
		{"cordoned", []corev1.Node{node("a", true, true), node("b", true, false)}, nil, "b"},
		{"tie by name", []corev1.Node{node("b", true, false), node("a", true, false)}, nil, "a"},
		{"fewest volumes", []corev1.Node{node("a", true, false), node("b", true, false)}, []storagev1.Volume{vol("a"), vol("a"), vol("b")}, "b"},
		{"status node counts", []corev1.Node{node("a", true, false), node("b", true, false)},
			[]storagev1.Volume{{Status: storagev1.VolumeStatus{Node: "a"}}}, "b"},
		{"a down node's volumes do not matter", []corev1.Node{node("a", false, false), node("b", true, false)}, []storagev1.Volume{vol("b")}, "b"},
	} {
		if got := ChooseNode(tc.nodes, tc.vols); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseVolumeCreate(t *testing.T) {
	for _, tc := range []struct {
		body string
		want VolumeCreate
		err  string
	}{
		{`{"size": 1, "name": "v1"}`, VolumeCreate{Size: 1, Name: "v1"}, ""},
		{`{"size": "2", "display_name": "v", "display_description": "d"}`, VolumeCreate{Size: 2, Name: "v", Description: "d"}, ""},
		{`{"size": 1.0, "availability_zone": "nova", "volume_type": "qcow2"}`, VolumeCreate{Size: 1, AvailabilityZone: "nova", VolumeType: "qcow2"}, ""},
		{`{"snapshot_id": "s"}`, VolumeCreate{SnapshotID: "s"}, ""},
		{`{"source_volid": "v", "name": null, "imageRef": null}`, VolumeCreate{SourceVolID: "v"}, ""},
		{`{"size": 1, "imageRef": "i", "metadata": {"a": "b"}}`, VolumeCreate{Size: 1, ImageRef: "i", Metadata: map[string]string{"a": "b"}}, ""},
		{`{}`, VolumeCreate{}, "'size' is a required property"},
		{`{"size": 0}`, VolumeCreate{}, "size"},
		{`{"size": -1}`, VolumeCreate{}, "size"},
		{`{"size": 1.5}`, VolumeCreate{}, "size"},
		{`{"size": 1, "name": 5}`, VolumeCreate{}, "name"},
		{`{"size": 1, "metadata": {"a": 1}}`, VolumeCreate{}, "metadata"},
		{`{"size": 1, "snapshot_id": "s", "imageRef": "i"}`, VolumeCreate{}, "only one of"},
		{`{"size": 1, "availability_zone": "x"}`, VolumeCreate{}, "Availability zone 'x' is invalid"},
		{`[]`, VolumeCreate{}, "not of type 'object'"},
		{`{"size": 1, "name": "` + strings.Repeat("x", 256) + `"}`, VolumeCreate{}, "too long"},
	} {
		got, err := ParseVolumeCreate(json.RawMessage(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || ToError(err).Code != 400 {
				t.Errorf("%s: %v, want %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v %v, want %+v", tc.body, got, err, tc.want)
		}
	}
}

func TestBuildVolume(t *testing.T) {
	v := BuildVolume(VolumeCreate{Size: 3, Name: "My Vol", Description: "d", Metadata: map[string]string{"k": "v"}}, "p1", "vol-1", "n1", "u", QCOW2Type, &storagev1.VolumeSource{Image: "img"})
	if v.Namespace != "p1" || v.Name != "vol-1" || v.Spec.Size.Value() != 3<<30 || v.Spec.Node != "n1" || v.Labels[storagev1.NodeLabel] != "n1" ||
		v.Spec.Format != storagev1.FormatQCOW2 || v.Spec.VolumeMode != storagev1.VolumeBlock || v.Spec.Source.Image != "img" {
		t.Errorf("%+v", v)
	}
	if DisplayName(v) != "My Vol" || v.Annotations[AnnotationDescription] != "d" || Metadata(v)["k"] != "v" || v.Annotations[AnnotationUserID] != "u" {
		t.Errorf("annotations %v", v.Annotations)
	}
	v = BuildVolume(VolumeCreate{Size: 1, Name: "v1"}, "p1", "v1", "", "", DefaultType, nil)
	if len(v.Annotations) != 0 || v.Labels != nil || v.Spec.Format != storagev1.FormatRaw || DisplayName(v) != "v1" {
		t.Errorf("plain %+v", v)
	}
}

func TestKubeName(t *testing.T) {
	taken := func(n string) bool { return n == "used" }
	for _, tc := range []struct{ in, exact, prefix string }{
		{"v1", "v1", ""}, {"used", "", "vol-"}, {"My Vol", "", "vol-"}, {"", "", "vol-"}, {strings.Repeat("a", 64), "", "vol-"},
	} {
		got := KubeName(tc.in, "vol", taken)
		if tc.exact != "" && got != tc.exact || tc.prefix != "" && (!strings.HasPrefix(got, tc.prefix) || got == "used") {
			t.Errorf("KubeName(%q) = %q", tc.in, got)
		}
	}
}

func TestListOpts(t *testing.T) {
	day := func(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }
	rows := []Row{
		{ID: "a", Name: "x", Status: "available", Size: 3, Created: day(1)},
		{ID: "b", Name: "y", Status: "error", Size: 1, Created: day(3)},
		{ID: "c", Name: "x", Status: "available", Size: 2, Created: day(2), Extra: map[string]string{"volume_id": "v"}},
	}
	ids := func(rs []Row) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.ID)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		query string
		want  string
		more  bool
		err   string
	}{
		{"", "b,c,a", false, ""},
		{"name=x", "c,a", false, ""},
		{"display_name=y", "b", false, ""},
		{"status=AVAILABLE", "c,a", false, ""},
		{"volume_id=v", "c", false, ""},
		{"unknown=1", "b,c,a", false, ""},
		{"sort=size:asc", "b,c,a", false, ""},
		{"sort=name:asc,size:desc", "a,c,b", false, ""},
		{"sort_key=size&sort_dir=desc", "a,c,b", false, ""},
		{"limit=2", "b,c", true, ""},
		{"limit=2&marker=c", "a", false, ""},
		{"marker=zz", "", false, "Marker zz could not be found"},
		{"sort=colour", "", false, "sort key"},
		{"sort=size:sideways", "", false, "sort direction"},
		{"limit=-1", "", false, "limit"},
		{"sort=size&sort_key=name", "", false, "cannot be used"},
	} {
		qv, _ := parseQuery(tc.query)
		o, err := ParseListOpts(qv, []string{"name", "display_name", "status", "volume_id"})
		var got []Row
		var more bool
		if err == nil {
			got, more, err = List(rows, o)
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want %q", tc.query, err, tc.err)
			}
			continue
		}
		if err != nil || ids(got) != tc.want || more != tc.more {
			t.Errorf("%q: %s %v %v, want %s %v", tc.query, ids(got), more, err, tc.want, tc.more)
		}
	}
}

func parseQuery(s string) (map[string][]string, error) {
	out := map[string][]string{}
	if s == "" {
		return out, nil
	}
	for _, kv := range strings.Split(s, "&") {
		k, v, _ := strings.Cut(kv, "=")
		out[k] = append(out[k], v)
	}
	return out, nil
}

func TestQuota(t *testing.T) {
	rq := func(hard corev1.ResourceList) corev1.ResourceQuota {
		return corev1.ResourceQuota{Spec: corev1.ResourceQuotaSpec{Hard: hard}}
	}
	for _, tc := range []struct {
		name string
		rqs  []corev1.ResourceQuota
		want Quota
	}{
		{"none", nil, Quota{-1, -1, -1}},
		{"storage", []corev1.ResourceQuota{rq(corev1.ResourceList{"requests.storage": resource.MustParse("10Gi")})}, Quota{-1, -1, 10}},
		{"claims", []corev1.ResourceQuota{rq(corev1.ResourceList{"persistentvolumeclaims": resource.MustParse("4")})}, Quota{4, -1, -1}},
		{"tightest", []corev1.ResourceQuota{
			rq(corev1.ResourceList{"count/volumes.storage.strata.io": resource.MustParse("8"), "requests.storage": resource.MustParse("1Ti")}),
			rq(corev1.ResourceList{"persistentvolumeclaims": resource.MustParse("5"), "count/volumesnapshots.storage.strata.io": resource.MustParse("2")}),
		}, Quota{5, 2, 1024}},
	} {
		if got := QuotaFromResourceQuotas(tc.rqs); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	vols := []storagev1.Volume{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: storagev1.VolumeSpec{Size: resource.MustParse("2Gi")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Spec: storagev1.VolumeSpec{Size: resource.MustParse("100Mi")}},
	}
	snaps := []storagev1.VolumeSnapshot{
		{Spec: storagev1.VolumeSnapshotSpec{Volume: "a"}},
		{Spec: storagev1.VolumeSnapshotSpec{Volume: "a"}, Status: storagev1.VolumeSnapshotStatus{Size: q("1Gi")}},
	}
	if got := Usage(vols, snaps); got != (Quota{2, 2, 2 + 1 + 2 + 1}) {
		t.Errorf("usage %+v", got)
	}
	set := QuotaSetToCinder("p", Quota{1, 2, 3}, nil)
	if set["volumes"] != int64(1) || set["snapshots"] != int64(2) || set["gigabytes"] != int64(3) || set["volumes___DEFAULT__"] != int64(-1) {
		t.Errorf("quota set %v", set)
	}
	set = QuotaSetToCinder("p", Quota{1, 2, 3}, &Quota{1, 0, 1})
	if set["volumes"].(map[string]int64)["in_use"] != 1 {
		t.Errorf("usage set %v", set)
	}
	abs := LimitsToCinder(Quota{1, 2, 3}, Quota{0, 1, 2})["limits"].(map[string]any)["absolute"].(map[string]any)
	if abs["maxTotalVolumes"] != int64(1) || abs["totalGigabytesUsed"] != int64(2) || abs["maxTotalBackups"] != -1 {
		t.Errorf("limits %v", abs)
	}
}

func TestToError(t *testing.T) {
	gr := storagev1.GroupVersion.WithResource("volumes").GroupResource()
	kind := storagev1.GroupVersion.WithKind("Volume").GroupKind()
	for _, tc := range []struct {
		name string
		err  error
		code int
		msg  string
	}{
		{"own", badRequest("x"), 400, "x"},
		{"plain", errors.New("boom"), 500, "boom"},
		{"not found", apierrors.NewNotFound(gr, "v"), 404, "not found"},
		{"has snapshots", apierrors.NewConflict(gr, "v", errors.New(`volume "v" has snapshots s1; delete them first`)), 400, `Invalid volume: volume "v" has snapshots s1; delete them first`},
		{"stale", apierrors.NewConflict(gr, "v", errors.New("the object has been modified; please apply your changes")), 409, "modified"},
		{"exists", apierrors.NewAlreadyExists(gr, "v"), 409, "already exists"},
		{"smaller than source", apierrors.NewInvalid(kind, "v", field.ErrorList{field.Invalid(field.NewPath("spec", "size"), "1Gi", `must be at least the size of snapshot "s1", 2Gi`)}),
			400, `Invalid input received: spec.size: Invalid value: "1Gi": must be at least the size of snapshot "s1", 2Gi`},
		{"quota", apierrors.NewForbidden(gr, "v", errors.New("exceeded quota: q")), 413, "VolumeLimitExceeded"},
		{"forbidden", apierrors.NewForbidden(gr, "v", errors.New("no")), 403, "no"},
		{"timeout", apierrors.NewTimeoutError("slow", 1), 504, "slow"},
	} {
		e := ToError(tc.err)
		if e.Code != tc.code || !strings.Contains(e.Message, tc.msg) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, e.Code, e.Message, tc.code, tc.msg)
		}
	}
	for code, name := range map[int]string{400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest", 413: "overLimit", 403: "forbidden", 501: "notImplemented", 500: "computeFault"} {
		if FaultName(code) != name {
			t.Errorf("FaultName(%d) = %s", code, FaultName(code))
		}
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
		code   int
	}{
		{"", "3.0", 0},
		{"volume 3.0", "3.0", 0},
		{"volume 3.70", "3.70", 0},
		{"compute 2.90, volume 3.42", "3.42", 0},
		{"volume latest", "3.70", 0},
		{"compute 2.1", "3.0", 0},
		{"volume 3.71", "3.0", 406},
		{"volume 2.0", "3.0", 406},
		{"volume three", "3.0", 400},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("OpenStack-API-Version", tc.header)
		}
		mv, err := Negotiate(h)
		code := 0
		if err != nil {
			code = ToError(err).Code
		}
		if mv.String() != tc.want || code != tc.code {
			t.Errorf("%q: %s %d, want %s %d", tc.header, mv, code, tc.want, tc.code)
		}
	}
}

func TestExtendAndSnapshotChecks(t *testing.T) {
	vol := func(phase storagev1.VolumePhase) *storagev1.Volume {
		return &storagev1.Volume{Spec: storagev1.VolumeSpec{Size: resource.MustParse("2Gi")}, Status: storagev1.VolumeStatus{Phase: phase}}
	}
	mv0, mv42, mv66 := Microversion{Major: 3, Minor: 0}, Microversion{Major: 3, Minor: 42}, Microversion{Major: 3, Minor: 66}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"extend available", ExtendCheck(vol(storagev1.VolumeAvailable), 3, mv0), ""},
		{"extend not larger", ExtendCheck(vol(storagev1.VolumeAvailable), 2, mv0), "greater than current size. (current: 2, extended: 2)"},
		{"extend in-use 3.0", ExtendCheck(vol(storagev1.VolumeInUse), 3, mv0), "must be 'available'"},
		{"extend in-use 3.42", ExtendCheck(vol(storagev1.VolumeInUse), 3, mv42), ""},
		{"extend creating", ExtendCheck(vol(storagev1.VolumeCreating), 3, mv42), "currently creating"},
		{"snapshot available", SnapshotCheck(vol(storagev1.VolumeAvailable), false, mv0), ""},
		{"snapshot in-use", SnapshotCheck(vol(storagev1.VolumeInUse), false, mv0), "force"},
		{"snapshot in-use forced", SnapshotCheck(vol(storagev1.VolumeInUse), true, mv0), ""},
		{"snapshot in-use 3.66", SnapshotCheck(vol(storagev1.VolumeInUse), false, mv66), ""},
		{"snapshot error", SnapshotCheck(vol(storagev1.VolumeError), true, mv66), "but it is error"},
	} {
		if tc.want == "" && tc.err != nil || tc.want != "" && (tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) || ToError(tc.err).Code != 400) {
			t.Errorf("%s: %v, want %q", tc.name, tc.err, tc.want)
		}
	}
}

func TestVolumeToCinder(t *testing.T) {
	v := &storagev1.Volume{
		ObjectMeta: metav1.ObjectMeta{Name: "v1", UID: "vid", CreationTimestamp: metav1.NewTime(time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)),
			Annotations: map[string]string{AnnotationName: "Disk", AnnotationMetadata: `{"a":"b"}`}},
		Spec: storagev1.VolumeSpec{Size: resource.MustParse("1536Mi"), Node: "n1", Format: storagev1.FormatQCOW2},
		Status: storagev1.VolumeStatus{Phase: storagev1.VolumeInUse, Size: q("1536Mi"),
			Attachments: []storagev1.VolumeAttachment{{Kind: "VirtualMachine", Name: "vm", Node: "n1"}, {Kind: "Pod", Name: "pod"}}},
	}
	l := Links{Self: "https://h/volume/v3/p", Bookmark: "https://h/volume/p"}
	in := VolumeInfo{ProjectID: "p", Servers: map[string]string{"vm": "vm-uid"}, MV: Microversion{Major: 3, Minor: 0}, Links: l}
	out := VolumeToCinder(v, in)
	if out["name"] != "Disk" || out["size"] != int64(2) || out["status"] != "in-use" || out["volume_type"] != "qcow2" ||
		out["created_at"] != "2024-05-06T07:08:09.000000" || out["snapshot_id"] != nil || out["bootable"] != "false" {
		t.Errorf("%v", out)
	}
	at := out["attachments"].([]any)
	if at[0].(map[string]any)["server_id"] != "vm-uid" || at[1].(map[string]any)["server_id"] != "pod" ||
		at[0].(map[string]any)["attachment_id"] != AttachmentID("vid", v.Status.Attachments[0]) {
		t.Errorf("attachments %v", at)
	}
	for _, k := range []string{"os-vol-host-attr:host", "volume_type_id", "group_id", "consumes_quota"} {
		if _, ok := out[k]; ok {
			t.Errorf("3.0 member body has %s", k)
		}
	}
	in.Admin, in.MV = true, MaxVersion
	out = VolumeToCinder(v, in)
	if out["os-vol-host-attr:host"] != "n1@file#file" || out["volume_type_id"] != QCOW2Type.ID || out["group_id"] != nil || out["shared_targets"] != false || out["consumes_quota"] != true {
		t.Errorf("3.70 admin body %v", out)
	}
	if s := VolumeSummary(v, l); s["id"] != "vid" || s["name"] != "Disk" || s["links"].([]map[string]string)[0]["href"] != "https://h/volume/v3/p/volumes/vid" {
		t.Errorf("summary %v", s)
	}
}

func TestSnapshotToCinder(t *testing.T) {
	s := &storagev1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Name: "s1", UID: "sid"}, Spec: storagev1.VolumeSnapshotSpec{Volume: "v1"}}
	out := SnapshotToCinder(s, SnapshotInfo{ProjectID: "p", VolumeID: "vid", VolumeSize: 3, MV: Microversion{Major: 3, Minor: 0}})
	if out["size"] != int64(3) || out["status"] != "creating" || out["os-extended-snapshot-attributes:progress"] != "0%" || out["volume_id"] != "vid" || out["name"] != "s1" {
		t.Errorf("%v", out)
	}
	if _, ok := out["user_id"]; ok {
		t.Error("3.0 snapshot has user_id")
	}
	s.Status = storagev1.VolumeSnapshotStatus{Phase: storagev1.SnapshotAvailable, Size: q("2Gi")}
	out = SnapshotToCinder(s, SnapshotInfo{ProjectID: "p", VolumeSize: 3, MV: MaxVersion})
	if out["size"] != int64(2) || out["status"] != "available" || out["os-extended-snapshot-attributes:progress"] != "100%" || out["consumes_quota"] != true {
		t.Errorf("%v", out)
	}
	if _, ok := out["user_id"]; !ok {
		t.Error("3.70 snapshot lacks user_id")
	}
}

func TestApplyUpdate(t *testing.T) {
	v := &storagev1.Volume{ObjectMeta: metav1.ObjectMeta{Name: "v1", Annotations: map[string]string{AnnotationName: "old", AnnotationDescription: "d"}}}
	upd := map[string]json.RawMessage{"name": json.RawMessage(`"v1"`), "description": json.RawMessage(`null`), "metadata": json.RawMessage(`{"k":"v"}`)}
	if err := ApplyUpdate(v, upd); err != nil {
		t.Fatal(err)
	}
	if _, ok := v.Annotations[AnnotationName]; ok || DisplayName(v) != "v1" || v.Annotations[AnnotationDescription] != "" || Metadata(v)["k"] != "v" || v.Annotations[AnnotationUpdatedAt] == "" {
		t.Errorf("%v", v.Annotations)
	}
	if err := ApplyUpdate(v, map[string]json.RawMessage{"size": json.RawMessage(`3`)}); err == nil || ToError(err).Code != 400 {
		t.Errorf("size update: %v", err)
	}
	if err := ApplyUpdate(v, map[string]json.RawMessage{"name": json.RawMessage(`""`)}); err != nil || DisplayName(v) != "" {
		t.Errorf("empty name: %v %q", err, DisplayName(v))
	}
}

func TestGiB(t *testing.T) {
	for in, want := range map[string]int64{"1Gi": 1, "1025Mi": 2, "64Mi": 1, "0": 0, "10G": 10} {
		if got := GiB(resource.MustParse(in)); got != want {
			t.Errorf("GiB(%s) = %d, want %d", in, got, want)
		}
	}
}
