package glance

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// The annotations an Image keeps its Glance-only attributes in. An Image
// without them (made with kubectl or `strata image upload`) shows its
// metadata.name as its name, visibility private, and no tags or
// properties.
const (
	AnnotationName            = "storage.strata.io/name"
	AnnotationID              = "storage.strata.io/glance-id"
	AnnotationVisibility      = "storage.strata.io/visibility"
	AnnotationProtected       = "storage.strata.io/protected"
	AnnotationHidden          = "storage.strata.io/hidden"
	AnnotationMinRAM          = "storage.strata.io/min-ram-mib"
	AnnotationDiskFormat      = "storage.strata.io/disk-format"
	AnnotationContainerFormat = "storage.strata.io/container-format"
	AnnotationTags            = "storage.strata.io/tags"       // JSON list
	AnnotationProperties      = "storage.strata.io/properties" // JSON object of strings
	AnnotationMD5             = "storage.strata.io/md5"
	AnnotationSHA512          = "storage.strata.io/sha512"
	AnnotationUpdatedAt       = "storage.strata.io/updated-at"
	AnnotationDeactivated     = "storage.strata.io/deactivated"
)

// Glance's enumerations.
var (
	diskFormats      = []string{"ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop"}
	containerFormats = []string{"ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed"}
	visibilities     = []string{"public", "private", "shared", "community"}
)

// readOnly are the attributes the server sets; a client setting one gets
// 403, as from Glance.
var readOnly = []string{"status", "checksum", "os_hash_algo", "os_hash_value", "size", "virtual_size",
	"created_at", "updated_at", "file", "schema", "self", "direct_url", "locations", "stores", "owner", "id"}

// Error is an error with its HTTP code, as Glance answers it.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func errorf(code int, format string, args ...any) *Error {
	return &Error{code, fmt.Sprintf(format, args...)}
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

// ID is the Glance ID of img: the one its creator chose, else its UID.
func ID(img *storagev1.Image) string {
	if id := img.Annotations[AnnotationID]; id != "" {
		return id
	}
	return string(img.UID)
}

// model is the Glance attributes an Image carries, apart from its bytes.
type model struct {
	Name            *string
	Visibility      string
	Protected       bool
	Hidden          bool
	MinDisk         int64
	MinRAM          int64
	DiskFormat      string
	ContainerFormat string
	Tags            []string
	Props           map[string]string
}

// readModel reads img's Glance attributes.
func readModel(img *storagev1.Image) model {
	a := img.Annotations
	m := model{Visibility: a[AnnotationVisibility], Props: map[string]string{}}
	if n, ok := a[AnnotationName]; ok {
		if n != "" {
			m.Name = &n
		}
	} else {
		n := img.Name
		m.Name = &n
	}
	if m.Visibility == "" {
		m.Visibility = "private"
	}
	m.Protected = a[AnnotationProtected] == "true"
	m.Hidden = a[AnnotationHidden] == "true"
	m.MinDisk = img.Spec.MinDiskGiB
	m.MinRAM, _ = strconv.ParseInt(a[AnnotationMinRAM], 10, 64)
	m.DiskFormat, m.ContainerFormat = a[AnnotationDiskFormat], a[AnnotationContainerFormat]
	if img.Status.Format != "" {
		// Stored bytes: their format is what they are, as detected,
		// whatever was declared (and for an Image made without Glance).
		m.DiskFormat = img.Status.Format
	}
	if m.ContainerFormat == "" && img.Status.Format != "" {
		m.ContainerFormat = "bare"
	}
	_ = json.Unmarshal([]byte(a[AnnotationTags]), &m.Tags)
	_ = json.Unmarshal([]byte(a[AnnotationProperties]), &m.Props)
	if m.Props == nil {
		m.Props = map[string]string{}
	}
	if img.Spec.Description != "" {
		m.Props["description"] = img.Spec.Description
	}
	return m
}

// write stores m in img's annotations and spec.
func (m model) write(img *storagev1.Image) {
	set := func(k, v string) {
		if img.Annotations == nil {
			img.Annotations = map[string]string{}
		}
		if v == "" {
			delete(img.Annotations, k)
			return
		}
		img.Annotations[k] = v
	}
	name := ""
	if m.Name != nil {
		name = *m.Name
	}
	if img.Annotations == nil {
		img.Annotations = map[string]string{}
	}
	img.Annotations[AnnotationName] = name
	set(AnnotationVisibility, m.Visibility)
	set(AnnotationProtected, boolText(m.Protected))
	set(AnnotationHidden, boolText(m.Hidden))
	img.Spec.MinDiskGiB = m.MinDisk
	set(AnnotationMinRAM, "")
	if m.MinRAM != 0 {
		set(AnnotationMinRAM, strconv.FormatInt(m.MinRAM, 10))
	}
	set(AnnotationDiskFormat, m.DiskFormat)
	set(AnnotationContainerFormat, m.ContainerFormat)
	set(AnnotationTags, "")
	if len(m.Tags) > 0 {
		b, _ := json.Marshal(m.Tags)
		set(AnnotationTags, string(b))
	}
	props := map[string]string{}
	for k, v := range m.Props {
		props[k] = v
	}
	img.Spec.Description = ""
	if d, ok := props["description"]; ok && len(d) <= 255 {
		img.Spec.Description = d
		delete(props, "description")
	}
	set(AnnotationProperties, "")
	if len(props) > 0 {
		b, _ := json.Marshal(props)
		set(AnnotationProperties, string(b))
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return ""
}

// Status is img's Glance status.
func Status(img *storagev1.Image) string {
	if img.DeletionTimestamp != nil {
		return "pending_delete"
	}
	if img.Annotations[AnnotationDeactivated] == "true" && img.Status.Phase == storagev1.ImageActive {
		return "deactivated"
	}
	switch img.Status.Phase {
	case storagev1.ImageSaving:
		return "saving"
	case storagev1.ImageImporting:
		return "importing"
	case storagev1.ImageActive:
		return "active"
	case storagev1.ImageError:
		return "killed"
	}
	return "queued"
}

// hasData says whether img's bytes are stored.
func hasData(img *storagev1.Image) bool {
	return img.Status.Phase == storagev1.ImageActive && img.Status.Reference != ""
}

// View is img as Glance shows it, owned by project owner: the base
// attributes and, at the same level, its custom properties.
func View(img *storagev1.Image, owner string) map[string]any {
	m := readModel(img)
	v := map[string]any{}
	for k, p := range m.Props {
		v[k] = p
	}
	id := ID(img)
	var name any
	if m.Name != nil {
		name = *m.Name
	}
	v["id"], v["name"], v["status"] = id, name, Status(img)
	v["visibility"], v["protected"], v["os_hidden"] = m.Visibility, m.Protected, m.Hidden
	v["owner"] = owner
	v["min_disk"], v["min_ram"] = m.MinDisk, m.MinRAM
	v["disk_format"], v["container_format"] = orNil(m.DiskFormat), orNil(m.ContainerFormat)
	tags := m.Tags
	if tags == nil {
		tags = []string{}
	}
	v["tags"] = tags
	v["checksum"], v["os_hash_algo"], v["os_hash_value"] = nil, nil, nil
	v["size"], v["virtual_size"] = nil, nil
	if hasData(img) {
		v["size"] = img.Status.SizeBytes
		if img.Status.VirtualSizeBytes > 0 {
			v["virtual_size"] = img.Status.VirtualSizeBytes
		}
		if md5 := img.Annotations[AnnotationMD5]; md5 != "" {
			v["checksum"] = md5
		}
		if sha := img.Annotations[AnnotationSHA512]; sha != "" {
			v["os_hash_algo"], v["os_hash_value"] = "sha512", sha
		} else if img.Status.Checksum != "" {
			v["os_hash_algo"], v["os_hash_value"] = "sha256", img.Status.Checksum
		}
	}
	created := img.CreationTimestamp.UTC()
	v["created_at"] = created.Format(time.RFC3339)
	v["updated_at"] = v["created_at"]
	if u := img.Annotations[AnnotationUpdatedAt]; u != "" {
		v["updated_at"] = u
	}
	v["self"] = "/v2/images/" + id
	v["file"] = "/v2/images/" + id + "/file"
	v["schema"] = "/v2/schemas/image"
	return v
}

func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// KubeName is the Kubernetes name of a new Image with Glance name: the
// name itself when it is a DNS label that taken does not report as used,
// else img-suffix.
func KubeName(name, suffix string, taken func(string) bool) string {
	if name != "" && len(validation.IsDNS1123Label(name)) == 0 && !taken(name) {
		return name
	}
	return "img-" + suffix
}

// NewImage is the Image of a create request body (Glance's image
// attributes, custom properties at the top level), in namespace ns. admin
// may make public images; owner, the caller's project, may be given as
// the owner (an image cannot be made for another project). The Image's name is left to the caller; a
// client-chosen ID is in AnnotationID.
func NewImage(body []byte, ns, owner string, admin bool) (*storagev1.Image, error) {
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return nil, errorf(http.StatusBadRequest, "Malformed JSON in request body: an image is a JSON object.")
	}
	m := model{Visibility: "shared", Props: map[string]string{}}
	img := &storagev1.Image{}
	img.Namespace = ns
	keys := make([]string, 0, len(req))
	for k := range req {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == "id" {
			var id string
			if err := json.Unmarshal(req[k], &id); err != nil || !uuidRe.MatchString(id) {
				return nil, errorf(http.StatusBadRequest, "Invalid image id: %s is not a UUID.", string(req[k]))
			}
			img.Annotations = map[string]string{AnnotationID: strings.ToLower(id)}
			continue
		}
		if k == "owner" {
			var o string
			if json.Unmarshal(req[k], &o) == nil && o == owner {
				continue
			}
			return nil, errorf(http.StatusForbidden, "An image's owner is the project it is created in (%s).", owner)
		}
		if err := m.set(k, req[k], admin, true); err != nil {
			return nil, err
		}
	}
	id := img.Annotations[AnnotationID]
	m.write(img)
	if id != "" {
		img.Annotations[AnnotationID] = id
	}
	return img, nil
}

// set sets attribute k to the JSON value raw, as a create (creating) or
// a patch's add or replace does.
func (m *model) set(k string, raw json.RawMessage, admin, creating bool) error {
	if slices.Contains(readOnly, k) {
		return errorf(http.StatusForbidden, "Attribute '%s' is read-only.", k)
	}
	bad := func(what string) error {
		return errorf(http.StatusBadRequest, "Invalid value %s for %s: %s.", string(raw), k, what)
	}
	switch k {
	case "name":
		if string(raw) == "null" {
			m.Name = nil
			return nil
		}
		var s string
		if json.Unmarshal(raw, &s) != nil || len(s) > 255 {
			return bad("a string of at most 255 characters")
		}
		m.Name = &s
	case "visibility":
		var s string
		if json.Unmarshal(raw, &s) != nil || !slices.Contains(visibilities, s) {
			return bad("one of public, private, shared, community")
		}
		if s == "public" && m.Visibility != "public" && !admin {
			return errorf(http.StatusForbidden, "You are not authorized to complete publicize_image action.")
		}
		m.Visibility = s
	case "protected", "os_hidden":
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return bad("a boolean")
		}
		if k == "protected" {
			m.Protected = b
		} else {
			m.Hidden = b
		}
	case "min_disk", "min_ram":
		var n int64
		if json.Unmarshal(raw, &n) != nil || n < 0 {
			return bad("an integer of at least 0")
		}
		if k == "min_disk" {
			m.MinDisk = n
		} else {
			m.MinRAM = n
		}
	case "disk_format", "container_format":
		var s *string
		if json.Unmarshal(raw, &s) != nil {
			return bad("a string")
		}
		allowed := diskFormats
		if k == "container_format" {
			allowed = containerFormats
		}
		v := ""
		if s != nil {
			v = *s
		}
		if v != "" && !slices.Contains(allowed, v) {
			return bad("one of " + strings.Join(allowed, ", "))
		}
		if k == "disk_format" {
			m.DiskFormat = v
		} else {
			m.ContainerFormat = v
		}
	case "tags":
		var tags []string
		if json.Unmarshal(raw, &tags) != nil {
			return bad("a list of strings")
		}
		m.Tags = nil
		for _, t := range tags {
			if err := m.addTag(t); err != nil {
				return err
			}
		}
	default:
		if k == "" || len(k) > 255 {
			return errorf(http.StatusBadRequest, "Invalid property name %q.", k)
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return bad("a string (custom properties are strings)")
		}
		if len(s) > 65535 {
			return bad("at most 65535 characters")
		}
		m.Props[k] = s
	}
	return nil
}

// addTag adds tag once.
func (m *model) addTag(tag string) error {
	if tag == "" || len(tag) > 255 {
		return errorf(http.StatusBadRequest, "Invalid tag %q: a tag has 1 to 255 characters.", tag)
	}
	if !slices.Contains(m.Tags, tag) {
		if len(m.Tags) >= 128 {
			return errorf(http.StatusRequestEntityTooLarge, "Maximum number of tags exceeded (128).")
		}
		m.Tags = append(m.Tags, tag)
	}
	return nil
}

// PatchOp is one operation of an openstack-images-v2.1-json-patch.
type PatchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

// baseAttrs are the attributes that are not custom properties.
var baseAttrs = []string{"name", "visibility", "protected", "os_hidden", "min_disk", "min_ram", "disk_format", "container_format", "tags"}

// ApplyPatch applies ops to img's Glance attributes. admin may publicize.
func ApplyPatch(img *storagev1.Image, ops []PatchOp, admin bool) error {
	m := readModel(img)
	queued := Status(img) == "queued"
	for _, op := range ops {
		attr, ok := strings.CutPrefix(op.Path, "/")
		if !ok || attr == "" {
			return errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '%s'", op.Path)
		}
		attr = strings.ReplaceAll(strings.ReplaceAll(attr, "~1", "/"), "~0", "~")
		if strings.Contains(attr, "/") && !strings.HasPrefix(attr, "tags/") {
			return errorf(http.StatusBadRequest, "Invalid JSON pointer for this resource: '%s'", op.Path)
		}
		if slices.Contains(readOnly, attr) {
			return errorf(http.StatusForbidden, "Attribute '%s' is read-only.", attr)
		}
		if (attr == "disk_format" || attr == "container_format") && !queued {
			return errorf(http.StatusForbidden, "Attribute %s can be only replaced for a queued image.", attr)
		}
		base := slices.Contains(baseAttrs, attr)
		switch op.Op {
		case "add", "replace":
			if op.Value == nil {
				return errorf(http.StatusBadRequest, "Operation objects must contain exactly one member named \"value\".")
			}
			if attr == "tags/-" && op.Op == "add" {
				var t string
				if json.Unmarshal(op.Value, &t) != nil {
					return errorf(http.StatusBadRequest, "A tag is a string.")
				}
				if err := m.addTag(t); err != nil {
					return err
				}
				continue
			}
			if !base {
				if _, exists := m.Props[attr]; op.Op == "replace" && !exists {
					return errorf(http.StatusConflict, "Property %s does not exist.", attr)
				}
			}
			if err := m.set(attr, op.Value, admin, false); err != nil {
				return err
			}
		case "remove":
			if base {
				return errorf(http.StatusForbidden, "Properties %s are reserved and cannot be removed.", attr)
			}
			if _, exists := m.Props[attr]; !exists {
				return errorf(http.StatusConflict, "Property %s does not exist.", attr)
			}
			delete(m.Props, attr)
		default:
			return errorf(http.StatusBadRequest, "Operation %q is not supported: use add, replace or remove.", op.Op)
		}
	}
	m.write(img)
	return nil
}

// ListQuery is a list request's filters, sort and page.
type ListQuery struct {
	Filters    map[string][]string // attribute -> accepted values
	Properties map[string]string   // custom property filters
	Tags       []string
	Visibility string // "" means the default set
	Hidden     bool
	SizeMin    *int64
	SizeMax    *int64
	Protected  *bool
	SortKeys   []string
	SortDirs   []string
	Limit      int
	Marker     string
}

var sortKeys = []string{"name", "status", "container_format", "disk_format", "size", "id", "created_at", "updated_at", "visibility", "owner", "min_disk", "min_ram", "virtual_size"}

// ParseListQuery reads the query of GET /v2/images.
func ParseListQuery(q map[string][]string) (ListQuery, error) {
	lq := ListQuery{Filters: map[string][]string{}, Properties: map[string]string{}, Limit: 25}
	for k, vals := range q {
		if len(vals) == 0 {
			continue
		}
		v := vals[0]
		switch k {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return lq, errorf(http.StatusBadRequest, "limit param must be a positive integer")
			}
			lq.Limit = min(n, 1000)
		case "marker":
			lq.Marker = v
		case "visibility":
			if v != "all" && !slices.Contains(visibilities, v) {
				return lq, errorf(http.StatusBadRequest, "Invalid visibility value: %s", v)
			}
			lq.Visibility = v
		case "os_hidden":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return lq, errorf(http.StatusBadRequest, "Invalid value for os_hidden: %s", v)
			}
			lq.Hidden = b
		case "protected":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return lq, errorf(http.StatusBadRequest, "Invalid value for protected: %s", v)
			}
			lq.Protected = &b
		case "size_min", "size_max":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return lq, errorf(http.StatusBadRequest, "%s must be an integer", k)
			}
			if k == "size_min" {
				lq.SizeMin = &n
			} else {
				lq.SizeMax = &n
			}
		case "tag":
			lq.Tags = append(lq.Tags, vals...)
		case "sort_key":
			for _, s := range vals {
				lq.SortKeys = append(lq.SortKeys, strings.Split(s, ",")...)
			}
		case "sort_dir":
			for _, s := range vals {
				lq.SortDirs = append(lq.SortDirs, strings.Split(s, ",")...)
			}
		case "sort":
			for _, part := range strings.Split(v, ",") {
				key, dir, _ := strings.Cut(strings.TrimSpace(part), ":")
				if dir == "" {
					dir = "desc"
				}
				lq.SortKeys, lq.SortDirs = append(lq.SortKeys, key), append(lq.SortDirs, dir)
			}
		case "name", "status", "id", "disk_format", "container_format", "owner":
			if in, ok := strings.CutPrefix(v, "in:"); ok {
				lq.Filters[k] = splitIn(in)
			} else {
				lq.Filters[k] = []string{v}
			}
		case "member_status", "created_at", "updated_at":
			// Accepted and not filtered on: no image has members here, and
			// time comparisons are not implemented.
		default:
			lq.Properties[k] = v
		}
	}
	if len(lq.SortKeys) == 0 {
		lq.SortKeys = []string{"created_at"}
	}
	for _, k := range lq.SortKeys {
		if !slices.Contains(sortKeys, k) {
			return lq, errorf(http.StatusBadRequest, "Invalid sort key: %s. It must be one of the following: %s.", k, strings.Join(sortKeys, ", "))
		}
	}
	if len(lq.SortDirs) > 1 && len(lq.SortDirs) != len(lq.SortKeys) {
		return lq, errorf(http.StatusBadRequest, "Number of sort dirs does not match the number of sort keys")
	}
	for _, d := range lq.SortDirs {
		if d != "asc" && d != "desc" {
			return lq, errorf(http.StatusBadRequest, "Invalid sort direction: %s", d)
		}
	}
	return lq, nil
}

func splitIn(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		out = append(out, strings.Trim(strings.TrimSpace(p), `"`))
	}
	return out
}

// Match says whether the image view v (owned by the caller when own)
// passes q's filters.
func (q ListQuery) Match(v map[string]any, own bool) bool {
	vis := v["visibility"].(string)
	switch q.Visibility {
	case "":
		if vis == "community" && !own {
			return false
		}
	case "all":
	default:
		if vis != q.Visibility {
			return false
		}
	}
	if v["os_hidden"].(bool) != q.Hidden {
		return false
	}
	for k, accepted := range q.Filters {
		if !slices.Contains(accepted, fmt.Sprint(orEmpty(v[k]))) {
			return false
		}
	}
	tags, _ := v["tags"].([]string)
	for _, t := range q.Tags {
		if !slices.Contains(tags, t) {
			return false
		}
	}
	for k, want := range q.Properties {
		if got, ok := v[k].(string); !ok || got != want {
			return false
		}
	}
	if q.Protected != nil && v["protected"].(bool) != *q.Protected {
		return false
	}
	size, _ := v["size"].(int64)
	if q.SizeMin != nil && (v["size"] == nil || size < *q.SizeMin) {
		return false
	}
	if q.SizeMax != nil && (v["size"] == nil || size > *q.SizeMax) {
		return false
	}
	return true
}

func orEmpty(x any) any {
	if x == nil {
		return ""
	}
	return x
}

// Sort orders views by q's sort keys, then by ID for a stable order.
func (q ListQuery) Sort(views []map[string]any) {
	dir := func(i int) string {
		switch {
		case i < len(q.SortDirs):
			return q.SortDirs[i]
		case len(q.SortDirs) == 1:
			return q.SortDirs[0]
		}
		return "desc"
	}
	sort.SliceStable(views, func(i, j int) bool {
		for n, k := range append(slices.Clone(q.SortKeys), "id") {
			c := compare(views[i][k], views[j][k])
			if c == 0 {
				continue
			}
			if dir(min(n, len(q.SortKeys)-1)) == "desc" {
				return c > 0
			}
			return c < 0
		}
		return false
	})
}

// compare orders two attribute values; null sorts first.
func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case int64:
		y, _ := b.(int64)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case bool:
		return strings.Compare(strconv.FormatBool(x), fmt.Sprint(b))
	}
	return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
}

// Page cuts the sorted views at q's marker and limit; more says whether
// views remain after the page.
func (q ListQuery) Page(views []map[string]any) (page []map[string]any, more bool, err error) {
	start := 0
	if q.Marker != "" {
		i := slices.IndexFunc(views, func(v map[string]any) bool { return v["id"] == q.Marker })
		if i < 0 {
			return nil, false, errorf(http.StatusBadRequest, "Invalid marker. Image %s could not be found.", q.Marker)
		}
		start = i + 1
	}
	end := min(start+q.Limit, len(views))
	return views[start:end], end < len(views), nil
}
