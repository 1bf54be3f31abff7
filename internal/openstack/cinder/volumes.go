package cinder

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/glance"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

func (h *handler) routes(api *http.ServeMux) {
	v := h.prefix + "/v3"
	api.HandleFunc("GET "+v+"/volumes", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listVolumes(rq, false) }))
	api.HandleFunc("GET "+v+"/volumes/detail", h.serve(readAccess, func(rq *request) (int, any, error) { return h.listVolumes(rq, true) }))
	api.HandleFunc("POST "+v+"/volumes", h.serve(writeAccess, h.createVolume))
	api.HandleFunc("GET "+v+"/volumes/{id}", h.serve(readAccess, h.showVolume))
	api.HandleFunc("PUT "+v+"/volumes/{id}", h.serve(writeAccess, h.updateVolume))
	api.HandleFunc("DELETE "+v+"/volumes/{id}", h.serve(writeAccess, h.deleteVolume))
	api.HandleFunc("POST "+v+"/volumes/{id}/action", h.serve(writeAccess, h.volumeAction))
	h.metadataRoutes(api, v+"/volumes/{id}/metadata", h.volumeObject)

	api.HandleFunc("GET "+v+"/snapshots", h.serve(readAccess, h.listSnapshots))
	api.HandleFunc("GET "+v+"/snapshots/detail", h.serve(readAccess, h.listSnapshots))
	api.HandleFunc("POST "+v+"/snapshots", h.serve(writeAccess, h.createSnapshot))
	api.HandleFunc("GET "+v+"/snapshots/{id}", h.serve(readAccess, h.showSnapshot))
	api.HandleFunc("PUT "+v+"/snapshots/{id}", h.serve(writeAccess, h.updateSnapshot))
	api.HandleFunc("DELETE "+v+"/snapshots/{id}", h.serve(writeAccess, h.deleteSnapshot))
	api.HandleFunc("POST "+v+"/snapshots/{id}/action", h.serve(writeAccess, h.snapshotAction))
	h.metadataRoutes(api, v+"/snapshots/{id}/metadata", h.snapshotObject)

	h.otherRoutes(api, v)
	api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("The resource could not be found."))
	})
}

// volumes lists the Volumes the caller sees: its namespace's, or with
// allTenants (an admin's all_tenants) every namespace's.
func (rq *request) volumes(allTenants bool) ([]storagev1.Volume, error) {
	var l storagev1.VolumeList
	var opts []client.ListOption
	if !allTenants {
		opts = append(opts, client.InNamespace(rq.ns))
	}
	if err := rq.h.c.List(rq.ctx, &l, opts...); err != nil {
		return nil, err
	}
	return l.Items, nil
}

func (rq *request) snapshots(ns string) ([]storagev1.VolumeSnapshot, error) {
	var l storagev1.VolumeSnapshotList
	if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// volume is the caller's volume of that ID; an admin's may be any
// project's.
func (rq *request) volume(id string) (*storagev1.Volume, error) {
	vols, err := rq.volumes(rq.admin)
	if err != nil {
		return nil, err
	}
	for i := range vols {
		if string(vols[i].UID) == id && (vols[i].Namespace == rq.ns || rq.admin) {
			return &vols[i], nil
		}
	}
	return nil, notFound("Volume %s could not be found.", id)
}

func (rq *request) snapshot(id string) (*storagev1.VolumeSnapshot, error) {
	var l storagev1.VolumeSnapshotList
	var opts []client.ListOption
	if !rq.admin {
		opts = append(opts, client.InNamespace(rq.ns))
	}
	if err := rq.h.c.List(rq.ctx, &l, opts...); err != nil {
		return nil, err
	}
	for i := range l.Items {
		if string(l.Items[i].UID) == id {
			return &l.Items[i], nil
		}
	}
	return nil, notFound("Snapshot %s could not be found.", id)
}

// projectID is the project ID of a namespace.
func (rq *request) projectID(ns string) string {
	return osapi.ProjectOf(rq.ctx, rq.id, rq.h.cfg.Projects, ns)
}

// volumeContext resolves what volume bodies of namespace ns name.
type volumeContext struct {
	vols    map[string]*storagev1.Volume
	snaps   map[string]*storagev1.VolumeSnapshot
	images  map[string]*storagev1.Image
	servers map[string]string
}

func (rq *request) volumeContext(ns string, vols []storagev1.Volume) (*volumeContext, error) {
	vc := &volumeContext{vols: map[string]*storagev1.Volume{}, snaps: map[string]*storagev1.VolumeSnapshot{},
		images: map[string]*storagev1.Image{}, servers: map[string]string{}}
	for i := range vols {
		if vols[i].Namespace == ns {
			vc.vols[vols[i].Name] = &vols[i]
		}
	}
	needSnaps, needImages, needVMs := false, false, false
	for i := range vols {
		if s := vols[i].Spec.Source; s != nil {
			needSnaps = needSnaps || s.Snapshot != ""
			needImages = needImages || s.Image != ""
		}
		for _, a := range vols[i].Status.Attachments {
			needVMs = needVMs || a.Kind == "VirtualMachine"
		}
	}
	if needSnaps {
		snaps, err := rq.snapshots(ns)
		if err != nil {
			return nil, err
		}
		for i := range snaps {
			vc.snaps[snaps[i].Name] = &snaps[i]
		}
	}
	if needImages {
		var l storagev1.ImageList
		if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(ns)); err != nil {
			return nil, err
		}
		for i := range l.Items {
			vc.images[l.Items[i].Name] = &l.Items[i]
		}
	}
	if needVMs {
		var l computev1.VirtualMachineList
		if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(ns)); err == nil {
			for i := range l.Items {
				vc.servers[l.Items[i].Name] = string(l.Items[i].UID)
			}
		}
	}
	return vc, nil
}

func (rq *request) volumeInfo(v *storagev1.Volume, vc *volumeContext) VolumeInfo {
	in := VolumeInfo{ProjectID: rq.projectID(v.Namespace), Servers: vc.servers, Admin: rq.admin, MV: rq.mv, Links: rq.links()}
	if s := v.Spec.Source; s != nil {
		switch {
		case s.Snapshot != "":
			if o := vc.snaps[s.Snapshot]; o != nil {
				in.SnapshotID = string(o.UID)
			}
		case s.Volume != "":
			if o := vc.vols[s.Volume]; o != nil {
				in.SourceVolID = string(o.UID)
			}
		case s.Image != "":
			if o := vc.images[s.Image]; o != nil {
				in.ImageID, in.ImageName = glance.ID(o), DisplayName(o)
			}
		}
	}
	return in
}

// volumeBody is one volume's body, resolving its references.
func (rq *request) volumeBody(v *storagev1.Volume) (map[string]any, error) {
	vols, err := rq.volumes(false)
	if err != nil {
		return nil, err
	}
	if v.Namespace != rq.ns {
		var l storagev1.VolumeList
		if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(v.Namespace)); err != nil {
			return nil, err
		}
		vols = l.Items
	}
	vols = append(vols, *v)
	vc, err := rq.volumeContext(v.Namespace, vols)
	if err != nil {
		return nil, err
	}
	return VolumeToCinder(v, rq.volumeInfo(v, vc)), nil
}

var volumeFilters = []string{"name", "display_name", "status", "bootable", "availability_zone", "volume_type", "project_id", "tenant_id"}

func (h *handler) listVolumes(rq *request, detail bool) (int, any, error) {
	q := rq.r.URL.Query()
	all := rq.admin && osapi.Truthy(q.Get("all_tenants"))
	o, err := ParseListOpts(q, volumeFilters)
	if err != nil {
		return 0, nil, err
	}
	if !all {
		delete(o.Filters, "project_id")
		delete(o.Filters, "tenant_id")
	} else if p := o.Filters["tenant_id"]; p != "" {
		o.Filters["project_id"] = p
		delete(o.Filters, "tenant_id")
	}
	vols, err := rq.volumes(all)
	if err != nil {
		return 0, nil, err
	}
	rows := make([]Row, len(vols))
	for i := range vols {
		v := &vols[i]
		rows[i] = Row{ID: string(v.UID), Name: DisplayName(v), Status: VolumeStatus(v), Size: GiB(v.Spec.Size),
			Created: v.CreationTimestamp.Time, Updated: updatedAt(v), Index: i,
			Extra: map[string]string{"bootable": strconv.FormatBool(Bootable(v)), "availability_zone": Zone,
				"volume_type": TypeOf(v).Name, "project_id": rq.projectID(v.Namespace)}}
	}
	if t := o.Filters["volume_type"]; t != "" {
		if ft := FindType(t); ft != nil {
			o.Filters["volume_type"] = ft.Name
		}
	}
	if b := o.Filters["bootable"]; b != "" {
		o.Filters["bootable"] = strconv.FormatBool(osapi.Truthy(b))
	}
	page, more, err := List(rows, o)
	if err != nil {
		return 0, nil, err
	}
	ctxs := map[string]*volumeContext{}
	out := []any{}
	for _, r := range page {
		v := &vols[r.Index]
		if !detail {
			out = append(out, VolumeSummary(v, rq.links()))
			continue
		}
		vc := ctxs[v.Namespace]
		if vc == nil {
			if vc, err = rq.volumeContext(v.Namespace, vols); err != nil {
				return 0, nil, err
			}
			ctxs[v.Namespace] = vc
		}
		out = append(out, VolumeToCinder(v, rq.volumeInfo(v, vc)))
	}
	body := map[string]any{"volumes": out}
	if more {
		body["volumes_links"] = []any{nextLink(rq, page[len(page)-1].ID)}
	}
	if rq.mv.AtLeast(45) && osapi.Truthy(q.Get("with_count")) {
		cnt := o
		cnt.Limit, cnt.Marker = 0, ""
		all, _, _ := List(rows, cnt)
		body["count"] = len(all)
	}
	return http.StatusOK, body, nil
}

func nextLink(rq *request, last string) map[string]string {
	q := rq.r.URL.Query()
	q.Set("marker", last)
	u := url.URL{Path: rq.r.URL.Path, RawQuery: q.Encode()}
	return map[string]string{"rel": "next", "href": rq.h.base(rq.r) + u.String()}
}

func (h *handler) showVolume(rq *request) (int, any, error) {
	v, err := rq.volume(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	body, err := rq.volumeBody(v)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"volume": body}, nil
}

func (h *handler) createVolume(rq *request) (int, any, error) {
	outer, err := rq.rawBody()
	if err != nil {
		return 0, nil, err
	}
	raw, ok := outer["volume"]
	if !ok || string(raw) == "null" {
		return 0, nil, badRequest("Invalid input for field/attribute volume. Value: None. 'volume' is a required property")
	}
	vc, err := ParseVolumeCreate(raw)
	if err != nil {
		return 0, nil, err
	}
	t := DefaultType
	if vc.VolumeType != "" {
		ft := FindType(vc.VolumeType)
		if ft == nil {
			return 0, nil, notFound("Volume type with name %s could not be found.", vc.VolumeType)
		}
		t = *ft
	}
	all, err := rq.volumes(true)
	if err != nil {
		return 0, nil, err
	}
	var mine []storagev1.Volume
	for i := range all {
		if all[i].Namespace == rq.ns {
			mine = append(mine, all[i])
		}
	}
	var source *storagev1.VolumeSource
	node := ""
	switch {
	case vc.SnapshotID != "":
		snaps, err := rq.snapshots(rq.ns)
		if err != nil {
			return 0, nil, err
		}
		var s *storagev1.VolumeSnapshot
		for i := range snaps {
			if string(snaps[i].UID) == vc.SnapshotID {
				s = &snaps[i]
			}
		}
		if s == nil {
			return 0, nil, notFound("Snapshot %s could not be found.", vc.SnapshotID)
		}
		if st := SnapshotStatus(s); st != "available" {
			return 0, nil, badRequest("Invalid snapshot: Originating snapshot status must be 'available', not %s.", st)
		}
		size := int64(0)
		if s.Status.Size != nil {
			size = GiB(*s.Status.Size)
		}
		if vc.Size == 0 {
			vc.Size = size
		} else if vc.Size < size {
			return 0, nil, badRequest("Invalid input received: Volume size '%d'GB cannot be smaller than the snapshot size %dGB.", vc.Size, size)
		}
		source = &storagev1.VolumeSource{Snapshot: s.Name}
		node = s.Labels[storagev1.NodeLabel]
		if node == "" {
			node = s.Status.Node
		}
	case vc.SourceVolID != "":
		var s *storagev1.Volume
		for i := range mine {
			if string(mine[i].UID) == vc.SourceVolID {
				s = &mine[i]
			}
		}
		if s == nil {
			return 0, nil, notFound("Volume %s could not be found.", vc.SourceVolID)
		}
		if st := VolumeStatus(s); st != "available" && st != "in-use" {
			return 0, nil, badRequest("Invalid volume: Source volume status must be available or in-use, not %s.", st)
		}
		size := GiB(s.Spec.Size)
		if vc.Size == 0 {
			vc.Size = size
		} else if vc.Size < size {
			return 0, nil, badRequest("Invalid input received: Volume size '%d'GB cannot be smaller than the source volume size %dGB.", vc.Size, size)
		}
		source = &storagev1.VolumeSource{Volume: s.Name}
		node = s.Spec.Node
	case vc.ImageRef != "":
		var l storagev1.ImageList
		if err := h.c.List(rq.ctx, &l, client.InNamespace(rq.ns)); err != nil {
			return 0, nil, err
		}
		var img *storagev1.Image
		for i := range l.Items {
			if glance.ID(&l.Items[i]) == vc.ImageRef || string(l.Items[i].UID) == vc.ImageRef {
				img = &l.Items[i]
			}
		}
		if img == nil {
			return 0, nil, notFound("Image %s could not be found.", vc.ImageRef)
		}
		need := ImageMinGiB(img)
		if vc.Size < need {
			return 0, nil, badRequest("Invalid input received: Size of specified image %s is %dGB, larger than the volume size %dGB.", vc.ImageRef, need, vc.Size)
		}
		source = &storagev1.VolumeSource{Image: img.Name}
	}
	if node == "" {
		var nodes corev1.NodeList
		if err := h.c.List(rq.ctx, &nodes); err != nil {
			return 0, nil, err
		}
		node = ChooseNode(nodes.Items, all)
	}
	taken := func(n string) bool {
		for i := range mine {
			if mine[i].Name == n {
				return true
			}
		}
		return false
	}
	name := KubeName(vc.Name, "vol", taken)
	v := BuildVolume(vc, rq.ns, name, node, rq.id.UserID, t, source)
	for {
		err = h.c.Create(rq.ctx, v)
		if !apierrors.IsAlreadyExists(err) || v.Name != vc.Name {
			break
		}
		// Made meanwhile: the Cinder name goes to the annotation.
		v = BuildVolume(vc, rq.ns, KubeName("", "vol", taken), node, rq.id.UserID, t, source)
	}
	if err != nil {
		return 0, nil, err
	}
	body, err := rq.volumeBody(v)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, map[string]any{"volume": body}, nil
}

func (h *handler) updateVolume(rq *request) (int, any, error) {
	v, err := rq.volume(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	var upd map[string]json.RawMessage
	if err := rq.body("volume", &upd); err != nil {
		return 0, nil, err
	}
	if len(upd) == 0 {
		return 0, nil, badRequest("Invalid input for field/attribute volume. Value: {}. It should have at least 1 property")
	}
	err = h.retryUpdate(rq.ctx, v, types.NamespacedName{Namespace: v.Namespace, Name: v.Name}, func() error {
		return ApplyUpdate(v, upd)
	})
	if err != nil {
		return 0, nil, err
	}
	body, err := rq.volumeBody(v)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"volume": body}, nil
}

// ApplyUpdate applies a PUT body's name, description and metadata to a
// volume's or snapshot's annotations.
func ApplyUpdate(obj client.Object, upd map[string]json.RawMessage) error {
	for k, raw := range upd {
		switch k {
		case "name", "display_name", "description", "display_description":
			var s *string
			if err := json.Unmarshal(raw, &s); err != nil {
				return badRequest("Invalid input for field/attribute %s. Value: %s. It is not of type 'string'", k, string(raw))
			}
			val := ""
			if s != nil {
				val = *s
			}
			if len(val) > 255 {
				return badRequest("Invalid input for field/attribute %s. It is too long (at most 255 characters)", k)
			}
			if k == "name" || k == "display_name" {
				a := obj.GetAnnotations()
				if val == obj.GetName() {
					delete(a, AnnotationName)
					obj.SetAnnotations(a)
				} else {
					setAnnotation(obj, AnnotationName, val)
				}
			} else if val == "" {
				a := obj.GetAnnotations()
				delete(a, AnnotationDescription)
				obj.SetAnnotations(a)
			} else {
				setAnnotation(obj, AnnotationDescription, val)
			}
		case "metadata":
			var md map[string]string
			if err := json.Unmarshal(raw, &md); err != nil {
				return badRequest("Invalid input for field/attribute metadata. Value: %s. It is not an object of strings", string(raw))
			}
			if err := ValidMetadata(md); err != nil {
				return err
			}
			SetMetadata(obj, md)
		default:
			return badRequest("Invalid input for field/attribute %s. Additional properties are not allowed ('%s' was unexpected)", k, k)
		}
	}
	Touch(obj, time.Now())
	return nil
}

func (h *handler) deleteVolume(rq *request) (int, any, error) {
	v, err := rq.volume(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	q := rq.r.URL.Query()
	cascade := osapi.Truthy(q.Get("cascade"))
	if len(v.Status.Attachments) > 0 {
		return 0, nil, badRequest("Invalid volume: Volume status must be available or error or error_restoring or error_extending or error_managing and must not be migrating, attached, belong to a group, have snapshots or be disassociated from snapshots after volume transfer.")
	}
	snaps, err := rq.snapshots(v.Namespace)
	if err != nil {
		return 0, nil, err
	}
	var deps []*storagev1.VolumeSnapshot
	for i := range snaps {
		if snaps[i].Spec.Volume == v.Name && snaps[i].DeletionTimestamp == nil {
			deps = append(deps, &snaps[i])
		}
	}
	if len(deps) > 0 && !cascade {
		return 0, nil, badRequest("Invalid volume: Volume still has %d dependent snapshots.", len(deps))
	}
	for _, s := range deps {
		if err := client.IgnoreNotFound(h.c.Delete(rq.ctx, s)); err != nil {
			return 0, nil, err
		}
	}
	return h.deleteOnce(rq, v, "Volume")
}

func (h *handler) volumeAction(rq *request) (int, any, error) {
	v, err := rq.volume(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	name, arg, err := rq.action()
	if err != nil {
		return 0, nil, err
	}
	key := types.NamespacedName{Namespace: v.Namespace, Name: v.Name}
	switch name {
	case "os-extend":
		var a struct {
			NewSize json.RawMessage `json:"new_size"`
		}
		if err := json.Unmarshal(arg, &a); err != nil || a.NewSize == nil {
			return 0, nil, badRequest("Invalid input for field/attribute new_size. Value: None. 'new_size' is a required property")
		}
		n, err := parseInt(a.NewSize)
		if err != nil || n <= 0 {
			return 0, nil, badRequest("Invalid input for field/attribute new_size. Value: %s. It must be an integer of at least 1", string(a.NewSize))
		}
		if err := ExtendCheck(v, n, rq.mv); err != nil {
			return 0, nil, err
		}
		err = h.retryUpdate(rq.ctx, v, key, func() error {
			if err := ExtendCheck(v, n, rq.mv); err != nil {
				return err
			}
			v.Spec.Size = *resource.NewQuantity(n<<30, resource.BinarySI)
			Touch(v, time.Now())
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, nil, nil
	case "os-set_bootable":
		var a struct {
			Bootable json.RawMessage `json:"bootable"`
		}
		if err := json.Unmarshal(arg, &a); err != nil || a.Bootable == nil {
			return 0, nil, badRequest("Invalid input for field/attribute bootable. Value: None. 'bootable' is a required property")
		}
		b, err := parseBool(a.Bootable)
		if err != nil {
			return 0, nil, badRequest("Invalid input for field/attribute bootable. Value: %s. It is not a boolean", string(a.Bootable))
		}
		err = h.retryUpdate(rq.ctx, v, key, func() error {
			setAnnotation(v, AnnotationBootable, strconv.FormatBool(b))
			Touch(v, time.Now())
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, nil, nil
	case "os-force_delete":
		if !rq.admin {
			return 0, nil, forbidden("Policy doesn't allow volume_extension:volume_admin_actions:force_delete to be performed.")
		}
		uid := v.UID
		if err := h.c.Delete(rq.ctx, v, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, nil, nil
	case "os-reset_status", "os-update_readonly_flag", "os-attach", "os-detach", "os-reserve", "os-unreserve",
		"os-begin_detaching", "os-roll_detaching", "os-initialize_connection", "os-terminate_connection",
		"os-volume_upload_image", "os-retype", "os-migrate_volume", "os-set_image_metadata", "os-unset_image_metadata",
		"os-show_image_metadata", "revert", "os-reimage", "os-unmanage", "os-force_detach":
		return 0, nil, notImplemented("The %s action is not supported: a volume's status is its node's report, and attaching to servers goes through Nova.", name)
	default:
		return 0, nil, badRequest("There is no such action: %s", name)
	}
}

// ExtendCheck is Cinder's rule for os-extend: the volume must be
// available (or in-use from 3.42) and the new size larger.
func ExtendCheck(v *storagev1.Volume, newSize int64, mv Microversion) error {
	st := VolumeStatus(v)
	if st != "available" && !(st == "in-use" && mv.AtLeast(42)) {
		want := "'available'"
		if mv.AtLeast(42) {
			want = "'available' or 'in-use'"
		}
		return badRequest("Invalid volume: Volume %s status must be %s to extend, currently %s.", v.UID, want, st)
	}
	if cur := GiB(v.Spec.Size); newSize <= cur {
		return badRequest("Invalid input received: New size for extend must be greater than current size. (current: %d, extended: %d).", cur, newSize)
	}
	return nil
}

// metadataRoutes serves the metadata subresource at base for the objects
// get finds.
func (h *handler) metadataRoutes(api *http.ServeMux, base string, get func(*request) (client.Object, error)) {
	update := func(rq *request, fn func(map[string]string) error) (map[string]string, error) {
		obj, err := get(rq)
		if err != nil {
			return nil, err
		}
		var md map[string]string
		err = h.retryUpdate(rq.ctx, obj, types.NamespacedName{Namespace: obj.GetNamespace(), Name: obj.GetName()}, func() error {
			md = Metadata(obj)
			if err := fn(md); err != nil {
				return err
			}
			if err := ValidMetadata(md); err != nil {
				return err
			}
			SetMetadata(obj, md)
			Touch(obj, time.Now())
			return nil
		})
		return md, err
	}
	api.HandleFunc("GET "+base, h.serve(readAccess, func(rq *request) (int, any, error) {
		obj, err := get(rq)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"metadata": Metadata(obj)}, nil
	}))
	set := func(replace bool) func(rq *request) (int, any, error) {
		return func(rq *request) (int, any, error) {
			var in map[string]string
			if err := rq.body("metadata", &in); err != nil {
				return 0, nil, err
			}
			md, err := update(rq, func(md map[string]string) error {
				if replace {
					clear(md)
				}
				for k, v := range in {
					md[k] = v
				}
				return nil
			})
			if err != nil {
				return 0, nil, err
			}
			return http.StatusOK, map[string]any{"metadata": md}, nil
		}
	}
	api.HandleFunc("POST "+base, h.serve(writeAccess, set(false)))
	api.HandleFunc("PUT "+base, h.serve(writeAccess, set(true)))
	api.HandleFunc("GET "+base+"/{key}", h.serve(readAccess, func(rq *request) (int, any, error) {
		obj, err := get(rq)
		if err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		v, ok := Metadata(obj)[k]
		if !ok {
			return 0, nil, notFound("Metadata with key %s could not be found.", k)
		}
		return http.StatusOK, map[string]any{"meta": map[string]string{k: v}}, nil
	}))
	api.HandleFunc("PUT "+base+"/{key}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		var in map[string]string
		if err := rq.body("meta", &in); err != nil {
			return 0, nil, err
		}
		k := rq.r.PathValue("key")
		if len(in) != 1 || !hasKey(in, k) {
			return 0, nil, badRequest("Request body and URI mismatch")
		}
		if _, err := update(rq, func(md map[string]string) error { md[k] = in[k]; return nil }); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, map[string]any{"meta": in}, nil
	}))
	api.HandleFunc("DELETE "+base+"/{key}", h.serve(writeAccess, func(rq *request) (int, any, error) {
		k := rq.r.PathValue("key")
		_, err := update(rq, func(md map[string]string) error {
			if _, ok := md[k]; !ok {
				return notFound("Metadata with key %s could not be found.", k)
			}
			delete(md, k)
			return nil
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, nil, nil
	}))
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

func (h *handler) volumeObject(rq *request) (client.Object, error) {
	return rq.volume(rq.r.PathValue("id"))
}

func (h *handler) snapshotObject(rq *request) (client.Object, error) {
	return rq.snapshot(rq.r.PathValue("id"))
}
