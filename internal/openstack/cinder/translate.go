package cinder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// Annotations this API keeps on the Volumes and VolumeSnapshots it makes
// (AnnotationName is the one Glance uses on Images too).
const (
	// AnnotationName is the Cinder name, when it is not the object's name.
	AnnotationName = "storage.strata.io/name"
	// AnnotationDescription is the description.
	AnnotationDescription = "storage.strata.io/description"
	// AnnotationMetadata is the metadata, a JSON object of strings.
	AnnotationMetadata = "storage.strata.io/metadata"
	// AnnotationBootable is "true" or "false" (os-set_bootable); absent, a
	// volume is bootable when made from an Image.
	AnnotationBootable = "storage.strata.io/bootable"
	// AnnotationUserID is the Keystone user that created the object.
	AnnotationUserID = "storage.strata.io/user-id"
	// AnnotationUpdatedAt is when this API last changed the object.
	AnnotationUpdatedAt = "storage.strata.io/updated-at"
)

// Zone is the one availability zone.
const Zone = "nova"

// Backend is the pool part of a volume's host (host@backend#pool).
const Backend = "file"

// VolumeType is a Cinder volume type: a file format.
type VolumeType struct {
	ID, Name, Description string
	Format                storagev1.VolumeFormat
}

// The volume types: __DEFAULT__ (raw) and qcow2.
var (
	DefaultType = VolumeType{ID: "5f0a3b8e-6c1d-4c57-9d3e-2a7b1c9e0d01", Name: "__DEFAULT__", Description: "Default Volume Type: raw files", Format: storagev1.FormatRaw}
	QCOW2Type   = VolumeType{ID: "5f0a3b8e-6c1d-4c57-9d3e-2a7b1c9e0d02", Name: "qcow2", Description: "qcow2 files (for VMs; not for pods)", Format: storagev1.FormatQCOW2}
	Types       = []VolumeType{DefaultType, QCOW2Type}
)

// FindType is the type of that name or ID; nil when none is.
func FindType(ref string) *VolumeType {
	for i := range Types {
		if Types[i].ID == ref || Types[i].Name == ref {
			return &Types[i]
		}
	}
	return nil
}

// TypeOf is a volume's type, by its format.
func TypeOf(v *storagev1.Volume) VolumeType {
	if v.Spec.Format == storagev1.FormatQCOW2 {
		return QCOW2Type
	}
	return DefaultType
}

// TypeToCinder is a volume type's body.
func TypeToCinder(t VolumeType) map[string]any {
	return map[string]any{
		"id": t.ID, "name": t.Name, "description": t.Description, "is_public": true,
		"os-volume-type-access:is_public": true, "qos_specs_id": nil,
		"extra_specs": map[string]string{"volume_backend_name": Backend, "strata:format": string(t.Format)},
	}
}

// DisplayName is an object's Cinder name: the annotation, else its name.
func DisplayName(m metav1.Object) string {
	if n, ok := m.GetAnnotations()[AnnotationName]; ok {
		return n
	}
	return m.GetName()
}

// Metadata is an object's Cinder metadata.
func Metadata(m metav1.Object) map[string]string {
	out := map[string]string{}
	if s := m.GetAnnotations()[AnnotationMetadata]; s != "" {
		_ = json.Unmarshal([]byte(s), &out)
	}
	return out
}

// SetMetadata stores md on m.
func SetMetadata(m metav1.Object, md map[string]string) {
	if len(md) == 0 {
		a := m.GetAnnotations()
		delete(a, AnnotationMetadata)
		m.SetAnnotations(a)
		return
	}
	b, _ := json.Marshal(md)
	setAnnotation(m, AnnotationMetadata, string(b))
}

// ValidMetadata checks Cinder's limits on metadata: keys of 1-255
// characters, values of at most 255.
func ValidMetadata(md map[string]string) error {
	for k, v := range md {
		if k == "" || len(k) > 255 {
			return badRequest("Invalid input received: metadata key %q must be 1 to 255 characters long.", k)
		}
		if len(v) > 255 {
			return badRequest("Invalid input received: metadata value of %q is longer than 255 characters.", k)
		}
	}
	return nil
}

func setAnnotation(m metav1.Object, key, value string) {
	a := m.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	m.SetAnnotations(a)
}

// Touch records now as the object's update time.
func Touch(m metav1.Object, now time.Time) {
	setAnnotation(m, AnnotationUpdatedAt, now.UTC().Format(time.RFC3339Nano))
}

// cinderTime is the form Cinder gives times in: no zone, microseconds.
func cinderTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000")
}

func updatedAt(m metav1.Object) time.Time {
	if s := m.GetAnnotations()[AnnotationUpdatedAt]; s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	return m.GetCreationTimestamp().Time
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// GiB is a quantity in whole GiB, rounded up (Cinder's sizes).
func GiB(q resource.Quantity) int64 {
	b := q.Value()
	return (b + (1 << 30) - 1) >> 30
}

// VolumeStatus is a volume's Cinder status: deleting once deleted, else
// its phase lower-cased (creating before the node reports), extending
// while the node has not grown it to spec.size yet.
func VolumeStatus(v *storagev1.Volume) string {
	if v.DeletionTimestamp != nil {
		return "deleting"
	}
	switch v.Status.Phase {
	case "", storagev1.VolumeCreating:
		return "creating"
	case storagev1.VolumeAvailable, storagev1.VolumeInUse:
		if v.Status.Size != nil && v.Status.Size.Cmp(v.Spec.Size) < 0 {
			return "extending"
		}
		if v.Status.Phase == storagev1.VolumeInUse || len(v.Status.Attachments) > 0 {
			return "in-use"
		}
		return "available"
	case storagev1.VolumeError:
		return "error"
	case storagev1.VolumeDeleting:
		return "deleting"
	}
	return strings.ToLower(string(v.Status.Phase))
}

// SnapshotStatus is a snapshot's Cinder status.
func SnapshotStatus(s *storagev1.VolumeSnapshot) string {
	if s.DeletionTimestamp != nil {
		return "deleting"
	}
	switch s.Status.Phase {
	case "", storagev1.SnapshotCreating:
		return "creating"
	case storagev1.SnapshotAvailable:
		return "available"
	case storagev1.SnapshotError:
		return "error"
	case storagev1.SnapshotDeleting:
		return "deleting"
	}
	return strings.ToLower(string(s.Status.Phase))
}

// Bootable is a volume's bootable flag: the annotation, else whether it
// was made from an Image.
func Bootable(v *storagev1.Volume) bool {
	switch v.Annotations[AnnotationBootable] {
	case "true":
		return true
	case "false":
		return false
	}
	return v.Spec.Source != nil && v.Spec.Source.Image != ""
}

// AttachmentID is the stable ID of one attachment of a volume.
func AttachmentID(volumeID string, a storagev1.VolumeAttachment) string {
	sum := sha256.Sum256([]byte(volumeID + "/" + a.Kind + "/" + a.Name))
	h := hex.EncodeToString(sum[:16])
	return h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:32]
}

// Host is a volume's Cinder host: node@backend#pool.
func Host(node string) string {
	if node == "" {
		return ""
	}
	return node + "@" + Backend + "#" + Backend
}

// VolumeInfo is what a volume's body needs besides the Volume: IDs of the
// objects it names, resolved by the caller.
type VolumeInfo struct {
	ProjectID string
	// SnapshotID, SourceVolID and ImageID are the IDs of the source ("":
	// none, or gone).
	SnapshotID, SourceVolID, ImageID, ImageName string
	// Servers maps an attachment's name to its server ID (VMs' UIDs).
	Servers map[string]string
	Admin   bool
	MV      Microversion
	Links   Links
}

// VolumeSummary is a volume in GET /volumes.
func VolumeSummary(v *storagev1.Volume, l Links) map[string]any {
	id := string(v.UID)
	return map[string]any{"id": id, "name": nilIfEmpty(DisplayName(v)), "links": l.of("/volumes/" + id)}
}

// VolumeToCinder is a volume's detailed body.
func VolumeToCinder(v *storagev1.Volume, in VolumeInfo) map[string]any {
	id := string(v.UID)
	node := v.Spec.Node
	if node == "" {
		node = v.Status.Node
	}
	attachments := []any{}
	for _, a := range v.Status.Attachments {
		server := a.Name
		if s := in.Servers[a.Name]; s != "" && a.Kind == "VirtualMachine" {
			server = s
		}
		aid := AttachmentID(id, a)
		attachments = append(attachments, map[string]any{
			"id": aid, "attachment_id": aid, "volume_id": id, "server_id": server,
			"host_name": nilIfEmpty(a.Node), "device": nilIfEmpty(a.Device), "attached_at": nil,
		})
	}
	t := TypeOf(v)
	out := map[string]any{
		"id": id, "name": nilIfEmpty(DisplayName(v)), "description": nilIfEmpty(v.Annotations[AnnotationDescription]),
		"status": VolumeStatus(v), "size": GiB(v.Spec.Size), "availability_zone": Zone,
		"created_at": cinderTime(v.CreationTimestamp.Time), "updated_at": cinderTime(updatedAt(v)),
		"attachments": attachments, "volume_type": t.Name, "snapshot_id": nilIfEmpty(in.SnapshotID),
		"source_volid": nilIfEmpty(in.SourceVolID), "metadata": Metadata(v), "links": in.Links.of("/volumes/" + id),
		"user_id": nilIfEmpty(v.Annotations[AnnotationUserID]), "bootable": fmt.Sprint(Bootable(v)),
		"encrypted": false, "replication_status": nil, "consistencygroup_id": nil, "multiattach": false,
		"os-vol-tenant-attr:tenant_id": in.ProjectID,
	}
	if in.ImageID != "" {
		out["volume_image_metadata"] = map[string]string{"image_id": in.ImageID, "image_name": in.ImageName}
	}
	if in.Admin {
		out["os-vol-host-attr:host"] = nilIfEmpty(Host(node))
		out["os-vol-mig-status-attr:migstat"] = nil
		out["os-vol-mig-status-attr:name_id"] = nil
	}
	if in.MV.AtLeast(13) {
		out["group_id"] = nil
	}
	if in.MV.AtLeast(21) && in.Admin {
		out["provider_id"] = nil
	}
	if in.MV.AtLeast(48) {
		out["shared_targets"], out["service_uuid"] = false, nil
	}
	if in.MV.AtLeast(61) && in.Admin {
		out["cluster_name"] = nil
	}
	if in.MV.AtLeast(63) {
		out["volume_type_id"] = t.ID
	}
	if in.MV.AtLeast(64) {
		out["encryption_key_id"] = nil
	}
	if in.MV.AtLeast(65) {
		out["consumes_quota"] = true
	}
	return out
}

// SnapshotInfo is what a snapshot's body needs besides the snapshot.
type SnapshotInfo struct {
	ProjectID string
	VolumeID  string
	// VolumeSize is the volume's size (GiB), for a snapshot the node has
	// not measured yet.
	VolumeSize int64
	MV         Microversion
}

// SnapshotToCinder is a snapshot's body.
func SnapshotToCinder(s *storagev1.VolumeSnapshot, in SnapshotInfo) map[string]any {
	size := in.VolumeSize
	if s.Status.Size != nil {
		size = GiB(*s.Status.Size)
	}
	status := SnapshotStatus(s)
	progress := "0%"
	if status == "available" {
		progress = "100%"
	}
	out := map[string]any{
		"id": string(s.UID), "name": nilIfEmpty(DisplayName(s)), "description": nilIfEmpty(s.Annotations[AnnotationDescription]),
		"status": status, "size": size, "volume_id": in.VolumeID, "metadata": Metadata(s),
		"created_at": cinderTime(s.CreationTimestamp.Time), "updated_at": cinderTime(updatedAt(s)),
		"os-extended-snapshot-attributes:project_id": in.ProjectID,
		"os-extended-snapshot-attributes:progress":   progress,
	}
	if in.MV.AtLeast(14) {
		out["group_snapshot_id"] = nil
	}
	if in.MV.AtLeast(41) {
		out["user_id"] = nilIfEmpty(s.Annotations[AnnotationUserID])
	}
	if in.MV.AtLeast(65) {
		out["consumes_quota"] = true
	}
	return out
}

// KubeName is the Kubernetes name for an object created with Cinder name:
// the name itself when it is a DNS label that taken does not report as
// used, else prefix-<random>.
func KubeName(name, prefix string, taken func(string) bool) string {
	if name != "" && len(validation.IsDNS1123Label(name)) == 0 && !taken(name) {
		return name
	}
	for {
		n := prefix + "-" + randomSuffix()
		if !taken(n) {
			return n
		}
	}
}

// NodeReady reports whether a node can take new volumes: Ready and
// schedulable.
func NodeReady(n *corev1.Node) bool {
	if n.Spec.Unschedulable || n.DeletionTimestamp != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// ChooseNode is where a new volume goes, as Cinder's scheduler would
// weigh its backends: among the Ready, schedulable nodes, the one holding
// the fewest Volumes (the node's own capacity is not reported, so volume
// count stands in for free space: the file backend is thin); ties by
// name. "" when no node is Ready.
func ChooseNode(nodes []corev1.Node, volumes []storagev1.Volume) string {
	count := map[string]int{}
	for i := range volumes {
		n := volumes[i].Spec.Node
		if n == "" {
			n = volumes[i].Status.Node
		}
		count[n]++
	}
	best := ""
	for i := range nodes {
		n := &nodes[i]
		if !NodeReady(n) {
			continue
		}
		if best == "" || count[n.Name] < count[best] || count[n.Name] == count[best] && n.Name < best {
			best = n.Name
		}
	}
	return best
}

// VolumeCreate is a parsed POST /volumes body.
type VolumeCreate struct {
	Size                                int64 // 0: not given
	Name, Description                   string
	VolumeType, SnapshotID, SourceVolID string
	ImageRef, AvailabilityZone          string
	Metadata                            map[string]string
}

// ParseVolumeCreate reads the "volume" object of POST /volumes.
func ParseVolumeCreate(raw json.RawMessage) (VolumeCreate, error) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil || f == nil {
		return VolumeCreate{}, badRequest("Invalid input for field/attribute volume. Value: %s. It is not of type 'object'", string(raw))
	}
	var vc VolumeCreate
	str := func(key string, dst *string) error {
		r, ok := f[key]
		if !ok || string(r) == "null" {
			return nil
		}
		if err := json.Unmarshal(r, dst); err != nil {
			return badRequest("Invalid input for field/attribute %s. Value: %s. It is not of type 'string'", key, string(r))
		}
		return nil
	}
	for key, dst := range map[string]*string{
		"name": &vc.Name, "display_name": &vc.Name, "description": &vc.Description, "display_description": &vc.Description,
		"volume_type": &vc.VolumeType, "snapshot_id": &vc.SnapshotID, "source_volid": &vc.SourceVolID,
		"imageRef": &vc.ImageRef, "image_id": &vc.ImageRef, "availability_zone": &vc.AvailabilityZone,
	} {
		if err := str(key, dst); err != nil {
			return VolumeCreate{}, err
		}
	}
	if len(vc.Name) > 255 {
		return VolumeCreate{}, badRequest("Invalid input for field/attribute name. Value: %s. It is too long (at most 255 characters)", vc.Name)
	}
	if r, ok := f["size"]; ok && string(r) != "null" {
		n, err := parseInt(r)
		if err != nil || n <= 0 {
			return VolumeCreate{}, badRequest("Invalid input for field/attribute size. Value: %s. It must be an integer of at least 1", string(r))
		}
		vc.Size = n
	}
	if r, ok := f["metadata"]; ok && string(r) != "null" {
		if err := json.Unmarshal(r, &vc.Metadata); err != nil {
			return VolumeCreate{}, badRequest("Invalid input for field/attribute metadata. Value: %s. It is not an object of strings", string(r))
		}
		if err := ValidMetadata(vc.Metadata); err != nil {
			return VolumeCreate{}, err
		}
	}
	sources := 0
	for _, s := range []string{vc.SnapshotID, vc.SourceVolID, vc.ImageRef} {
		if s != "" {
			sources++
		}
	}
	if sources > 1 {
		return VolumeCreate{}, badRequest("Invalid input received: only one of snapshot_id, source_volid and imageRef can be given.")
	}
	if vc.Size == 0 && vc.SnapshotID == "" && vc.SourceVolID == "" {
		return VolumeCreate{}, badRequest("Invalid input for field/attribute size. Value: None. 'size' is a required property")
	}
	if vc.AvailabilityZone != "" && vc.AvailabilityZone != Zone {
		return VolumeCreate{}, badRequest("Invalid input received: Availability zone '%s' is invalid.", vc.AvailabilityZone)
	}
	return vc, nil
}

// BuildVolume is the Volume that vc asks for, in namespace ns, named
// name, on node ("" : Strata places it), of type t, with source (nil:
// empty).
func BuildVolume(vc VolumeCreate, ns, name, node, userID string, t VolumeType, source *storagev1.VolumeSource) *storagev1.Volume {
	v := &storagev1.Volume{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: storagev1.VolumeSpec{
			Size: *resource.NewQuantity(vc.Size<<30, resource.BinarySI), VolumeMode: storagev1.VolumeBlock,
			Format: t.Format, Node: node, Source: source,
		},
	}
	if node != "" {
		v.Labels = map[string]string{storagev1.NodeLabel: node}
	}
	if vc.Name != name {
		setAnnotation(v, AnnotationName, vc.Name)
	}
	if vc.Description != "" {
		setAnnotation(v, AnnotationDescription, vc.Description)
	}
	if userID != "" {
		setAnnotation(v, AnnotationUserID, userID)
	}
	SetMetadata(v, vc.Metadata)
	return v
}

// Row is what listing needs of a volume or snapshot.
type Row struct {
	ID, Name, Status string
	Size             int64
	Created, Updated time.Time
	// Extra are further filterable attributes (volume_id, bootable…).
	Extra map[string]string
	// Index is the item's position in the caller's slice.
	Index int
}

// ListOpts are a list request's filters, sort and page.
type ListOpts struct {
	// Filters are exact matches on name, status and Extra's keys.
	Filters map[string]string
	// Sort is key:dir pairs (created_at desc by default).
	Sort   []SortKey
	Limit  int // 0: all
	Marker string
}

// SortKey is one sort key and its direction.
type SortKey struct {
	Key  string
	Desc bool
}

var sortable = map[string]bool{"id": true, "name": true, "display_name": true, "status": true, "size": true, "created_at": true, "updated_at": true}

// ParseListOpts reads Cinder's list query: filters (the keys in filters
// allowed, the others ignored, as Cinder's resource filters do),
// sort=k1:dir,k2 or sort_key/sort_dir, limit and marker.
func ParseListOpts(q map[string][]string, filters []string) (ListOpts, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	o := ListOpts{Filters: map[string]string{}}
	for _, k := range filters {
		if v, ok := q[k]; ok && len(v) > 0 {
			key := k
			if k == "display_name" {
				key = "name"
			}
			o.Filters[key] = v[len(v)-1]
		}
	}
	if s := get("limit"); s != "" {
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 0 {
			return o, badRequest("Invalid input received: limit must be a non-negative integer, not %q.", s)
		}
		o.Limit = n
	}
	o.Marker = get("marker")
	var keys []string
	var dirs []string
	if s := get("sort"); s != "" {
		if get("sort_key") != "" || get("sort_dir") != "" {
			return o, badRequest("Invalid input received: the 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.")
		}
		for _, part := range strings.Split(s, ",") {
			k, d, _ := strings.Cut(strings.TrimSpace(part), ":")
			keys, dirs = append(keys, k), append(dirs, d)
		}
	} else if k := get("sort_key"); k != "" {
		keys, dirs = []string{k}, []string{get("sort_dir")}
	}
	for i, k := range keys {
		if !sortable[k] {
			return o, badRequest("Invalid input received: sort key %q is not one of id, name, status, size, created_at, updated_at.", k)
		}
		d := strings.ToLower(dirs[i])
		if d != "" && d != "asc" && d != "desc" {
			return o, badRequest("Invalid input received: sort direction %q is not asc or desc.", dirs[i])
		}
		if k == "display_name" {
			k = "name"
		}
		o.Sort = append(o.Sort, SortKey{Key: k, Desc: d != "asc"})
	}
	return o, nil
}

// List filters, sorts and pages rows; more says a next page exists.
// An unknown marker is 400, as Cinder's.
func List(rows []Row, o ListOpts) (out []Row, more bool, err error) {
	for _, r := range rows {
		ok := true
		for k, want := range o.Filters {
			var got string
			switch k {
			case "name":
				got = r.Name
			case "status":
				got, want = r.Status, strings.ToLower(want)
			default:
				got = r.Extra[k]
			}
			if got != want {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	keys := append(append([]SortKey{}, o.Sort...), SortKey{Key: "created_at", Desc: true}, SortKey{Key: "id", Desc: true})
	sort.SliceStable(out, func(i, j int) bool {
		for _, k := range keys {
			c := compareRow(out[i], out[j], k.Key)
			if c == 0 {
				continue
			}
			if k.Desc {
				return c > 0
			}
			return c < 0
		}
		return false
	})
	if o.Marker != "" {
		at := -1
		for i, r := range out {
			if r.ID == o.Marker {
				at = i
			}
		}
		if at < 0 {
			return nil, false, badRequest("Marker %s could not be found.", o.Marker)
		}
		out = out[at+1:]
	}
	if o.Limit > 0 && len(out) > o.Limit {
		return out[:o.Limit], true, nil
	}
	return out, false, nil
}

func compareRow(a, b Row, key string) int {
	switch key {
	case "id":
		return strings.Compare(a.ID, b.ID)
	case "name":
		return strings.Compare(a.Name, b.Name)
	case "status":
		return strings.Compare(a.Status, b.Status)
	case "size":
		return cmpInt(a.Size, b.Size)
	case "updated_at":
		return a.Updated.Compare(b.Updated)
	}
	return a.Created.Compare(b.Created)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Quota is a project's Block Storage quota (-1: unlimited).
type Quota struct {
	Volumes, Snapshots, Gigabytes int64
}

// Quota keys of a namespace's ResourceQuotas that bound volumes.
const (
	quotaVolumes   = "count/volumes.storage.strata.io"
	quotaSnapshots = "count/volumesnapshots.storage.strata.io"
)

// QuotaFromResourceQuotas is the tightest limit the ResourceQuotas set on
// volumes (count/volumes.storage.strata.io or persistentvolumeclaims),
// snapshots (count/volumesnapshots.storage.strata.io) and gigabytes
// (requests.storage, whole GiB); -1 where none does.
func QuotaFromResourceQuotas(rqs []corev1.ResourceQuota) Quota {
	q := Quota{-1, -1, -1}
	tighten := func(cur *int64, v int64) {
		if *cur < 0 || v < *cur {
			*cur = v
		}
	}
	for _, r := range rqs {
		for name, v := range r.Spec.Hard {
			switch string(name) {
			case quotaVolumes, string(corev1.ResourcePersistentVolumeClaims):
				tighten(&q.Volumes, v.Value())
			case quotaSnapshots:
				tighten(&q.Snapshots, v.Value())
			case string(corev1.ResourceRequestsStorage):
				tighten(&q.Gigabytes, v.Value()>>30)
			}
		}
	}
	return q
}

// Usage is what a project's volumes and snapshots take.
func Usage(vols []storagev1.Volume, snaps []storagev1.VolumeSnapshot) Quota {
	u := Quota{Volumes: int64(len(vols)), Snapshots: int64(len(snaps))}
	size := map[string]int64{}
	for i := range vols {
		g := GiB(vols[i].Spec.Size)
		size[vols[i].Name] = g
		u.Gigabytes += g
	}
	for i := range snaps {
		if snaps[i].Status.Size != nil {
			u.Gigabytes += GiB(*snaps[i].Status.Size)
		} else {
			u.Gigabytes += size[snaps[i].Spec.Volume]
		}
	}
	return u
}

// LimitsToCinder is GET /limits.
func LimitsToCinder(q, used Quota) map[string]any {
	return map[string]any{"limits": map[string]any{"rate": []any{}, "absolute": map[string]any{
		"maxTotalVolumes": q.Volumes, "maxTotalSnapshots": q.Snapshots, "maxTotalVolumeGigabytes": q.Gigabytes,
		"maxTotalBackups": -1, "maxTotalBackupGigabytes": -1,
		"totalVolumesUsed": used.Volumes, "totalSnapshotsUsed": used.Snapshots, "totalGigabytesUsed": used.Gigabytes,
		"totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0,
	}}}
}

// QuotaSetToCinder is an os-quota-sets body; with used, the usage form.
func QuotaSetToCinder(project string, q Quota, used *Quota) map[string]any {
	set := map[string]any{"id": project}
	var u Quota
	if used != nil {
		u = *used
	}
	put := func(k string, limit, inUse int64) {
		if used == nil {
			set[k] = limit
		} else {
			set[k] = map[string]int64{"limit": limit, "in_use": inUse, "reserved": 0, "allocated": 0}
		}
	}
	put("volumes", q.Volumes, u.Volumes)
	put("snapshots", q.Snapshots, u.Snapshots)
	put("gigabytes", q.Gigabytes, u.Gigabytes)
	put("backups", -1, 0)
	put("backup_gigabytes", -1, 0)
	put("groups", -1, 0)
	put("per_volume_gigabytes", -1, 0)
	for _, t := range Types {
		put("volumes_"+t.Name, -1, 0)
		put("snapshots_"+t.Name, -1, 0)
		put("gigabytes_"+t.Name, -1, 0)
	}
	return set
}

// ImageMinGiB is the smallest volume an Image fits in: its min_disk, or
// its virtual size rounded up to a GiB, whichever is larger.
func ImageMinGiB(img *storagev1.Image) int64 {
	need := img.Spec.MinDiskGiB
	if n := (img.Status.VirtualSizeBytes + (1 << 30) - 1) >> 30; n > need {
		need = n
	}
	return need
}
