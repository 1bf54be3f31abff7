package cinder

import (
	"encoding/json"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/openstack/osapi"
)

// snapshotBody is a snapshot's body, with its volume's ID and size.
func (rq *request) snapshotBody(s *storagev1.VolumeSnapshot, vols map[string]*storagev1.Volume) (map[string]any, error) {
	if vols == nil {
		var l storagev1.VolumeList
		if err := rq.h.c.List(rq.ctx, &l, client.InNamespace(s.Namespace)); err != nil {
			return nil, err
		}
		vols = map[string]*storagev1.Volume{}
		for i := range l.Items {
			vols[l.Items[i].Name] = &l.Items[i]
		}
	}
	in := SnapshotInfo{ProjectID: rq.projectID(s.Namespace), MV: rq.mv}
	if v := vols[s.Spec.Volume]; v != nil {
		in.VolumeID, in.VolumeSize = string(v.UID), GiB(v.Spec.Size)
	}
	return SnapshotToCinder(s, in), nil
}

var snapshotFilters = []string{"name", "display_name", "status", "volume_id", "project_id"}

func (h *handler) listSnapshots(rq *request) (int, any, error) {
	q := rq.r.URL.Query()
	all := rq.admin && osapi.Truthy(q.Get("all_tenants"))
	o, err := ParseListOpts(q, snapshotFilters)
	if err != nil {
		return 0, nil, err
	}
	if !all {
		delete(o.Filters, "project_id")
	}
	var l storagev1.VolumeSnapshotList
	var opts []client.ListOption
	if !all {
		opts = append(opts, client.InNamespace(rq.ns))
	}
	if err := h.c.List(rq.ctx, &l, opts...); err != nil {
		return 0, nil, err
	}
	vols, err := rq.volumes(all)
	if err != nil {
		return 0, nil, err
	}
	byName := map[string]*storagev1.Volume{}
	for i := range vols {
		byName[vols[i].Namespace+"/"+vols[i].Name] = &vols[i]
	}
	rows := make([]Row, len(l.Items))
	for i := range l.Items {
		s := &l.Items[i]
		volID := ""
		if v := byName[s.Namespace+"/"+s.Spec.Volume]; v != nil {
			volID = string(v.UID)
		}
		rows[i] = Row{ID: string(s.UID), Name: DisplayName(s), Status: SnapshotStatus(s), Created: s.CreationTimestamp.Time,
			Updated: updatedAt(s), Index: i, Extra: map[string]string{"volume_id": volID, "project_id": rq.projectID(s.Namespace)}}
		if s.Status.Size != nil {
			rows[i].Size = GiB(*s.Status.Size)
		}
	}
	page, more, err := List(rows, o)
	if err != nil {
		return 0, nil, err
	}
	out := []any{}
	for _, r := range page {
		s := &l.Items[r.Index]
		vm := map[string]*storagev1.Volume{}
		if v := byName[s.Namespace+"/"+s.Spec.Volume]; v != nil {
			vm[s.Spec.Volume] = v
		}
		b, err := rq.snapshotBody(s, vm)
		if err != nil {
			return 0, nil, err
		}
		out = append(out, b)
	}
	body := map[string]any{"snapshots": out}
	if more {
		body["snapshots_links"] = []any{nextLink(rq, page[len(page)-1].ID)}
	}
	if rq.mv.AtLeast(45) && osapi.Truthy(q.Get("with_count")) {
		cnt := o
		cnt.Limit, cnt.Marker = 0, ""
		all, _, _ := List(rows, cnt)
		body["count"] = len(all)
	}
	return http.StatusOK, body, nil
}

func (h *handler) showSnapshot(rq *request) (int, any, error) {
	s, err := rq.snapshot(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	b, err := rq.snapshotBody(s, nil)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"snapshot": b}, nil
}

// SnapshotCreate is a parsed POST /snapshots body.
type SnapshotCreate struct {
	VolumeID, Name, Description string
	Force                       bool
	Metadata                    map[string]string
}

// ParseSnapshotCreate reads the "snapshot" object of POST /snapshots.
func ParseSnapshotCreate(raw json.RawMessage) (SnapshotCreate, error) {
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil || f == nil {
		return SnapshotCreate{}, badRequest("Invalid input for field/attribute snapshot. Value: %s. It is not of type 'object'", string(raw))
	}
	var sc SnapshotCreate
	for key, dst := range map[string]*string{"volume_id": &sc.VolumeID, "name": &sc.Name, "display_name": &sc.Name,
		"description": &sc.Description, "display_description": &sc.Description} {
		r, ok := f[key]
		if !ok || string(r) == "null" {
			continue
		}
		if err := json.Unmarshal(r, dst); err != nil {
			return SnapshotCreate{}, badRequest("Invalid input for field/attribute %s. Value: %s. It is not of type 'string'", key, string(r))
		}
	}
	if sc.VolumeID == "" {
		return SnapshotCreate{}, badRequest("Invalid input for field/attribute volume_id. Value: None. 'volume_id' is a required property")
	}
	if r, ok := f["force"]; ok && string(r) != "null" {
		b, err := parseBool(r)
		if err != nil {
			return SnapshotCreate{}, badRequest("Invalid input for field/attribute force. Value: %s. It is not a boolean", string(r))
		}
		sc.Force = b
	}
	if r, ok := f["metadata"]; ok && string(r) != "null" {
		if err := json.Unmarshal(r, &sc.Metadata); err != nil {
			return SnapshotCreate{}, badRequest("Invalid input for field/attribute metadata. Value: %s. It is not an object of strings", string(r))
		}
		if err := ValidMetadata(sc.Metadata); err != nil {
			return SnapshotCreate{}, err
		}
	}
	return sc, nil
}

// SnapshotCheck is Cinder's rule for snapshotting a volume: available, or
// in-use with force (no force needed from 3.66).
func SnapshotCheck(v *storagev1.Volume, force bool, mv Microversion) error {
	switch st := VolumeStatus(v); {
	case st == "available":
		return nil
	case st == "in-use" && (force || mv.AtLeast(66)):
		return nil
	case st == "in-use":
		return badRequest("Invalid volume: Volume %s status must be available, but it is in-use: pass force to snapshot it anyway.", v.UID)
	default:
		return badRequest("Invalid volume: Volume %s status must be available or in-use, but it is %s.", v.UID, st)
	}
}

func (h *handler) createSnapshot(rq *request) (int, any, error) {
	outer, err := rq.rawBody()
	if err != nil {
		return 0, nil, err
	}
	raw, ok := outer["snapshot"]
	if !ok || string(raw) == "null" {
		return 0, nil, badRequest("Invalid input for field/attribute snapshot. Value: None. 'snapshot' is a required property")
	}
	sc, err := ParseSnapshotCreate(raw)
	if err != nil {
		return 0, nil, err
	}
	vols, err := rq.volumes(false)
	if err != nil {
		return 0, nil, err
	}
	var v *storagev1.Volume
	for i := range vols {
		if string(vols[i].UID) == sc.VolumeID {
			v = &vols[i]
		}
	}
	if v == nil {
		return 0, nil, notFound("Volume %s could not be found.", sc.VolumeID)
	}
	if err := SnapshotCheck(v, sc.Force, rq.mv); err != nil {
		return 0, nil, err
	}
	snaps, err := rq.snapshots(rq.ns)
	if err != nil {
		return 0, nil, err
	}
	taken := func(n string) bool {
		for i := range snaps {
			if snaps[i].Name == n {
				return true
			}
		}
		return false
	}
	build := func(name string) *storagev1.VolumeSnapshot {
		s := &storagev1.VolumeSnapshot{Spec: storagev1.VolumeSnapshotSpec{Volume: v.Name}}
		s.Namespace, s.Name = rq.ns, name
		if sc.Name != name {
			setAnnotation(s, AnnotationName, sc.Name)
		}
		if sc.Description != "" {
			setAnnotation(s, AnnotationDescription, sc.Description)
		}
		if rq.id.UserID != "" {
			setAnnotation(s, AnnotationUserID, rq.id.UserID)
		}
		SetMetadata(s, sc.Metadata)
		return s
	}
	s := build(KubeName(sc.Name, "snap", taken))
	for {
		err = h.c.Create(rq.ctx, s)
		if !apierrors.IsAlreadyExists(err) || s.Name != sc.Name {
			break
		}
		s = build(KubeName("", "snap", taken))
	}
	if err != nil {
		return 0, nil, err
	}
	b, err := rq.snapshotBody(s, map[string]*storagev1.Volume{v.Name: v})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusAccepted, map[string]any{"snapshot": b}, nil
}

func (h *handler) updateSnapshot(rq *request) (int, any, error) {
	s, err := rq.snapshot(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	var upd map[string]json.RawMessage
	if err := rq.body("snapshot", &upd); err != nil {
		return 0, nil, err
	}
	if len(upd) == 0 {
		return 0, nil, badRequest("Invalid input for field/attribute snapshot. Value: {}. It should have at least 1 property")
	}
	err = h.retryUpdate(rq.ctx, s, types.NamespacedName{Namespace: s.Namespace, Name: s.Name}, func() error {
		return ApplyUpdate(s, upd)
	})
	if err != nil {
		return 0, nil, err
	}
	b, err := rq.snapshotBody(s, nil)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"snapshot": b}, nil
}

func (h *handler) deleteSnapshot(rq *request) (int, any, error) {
	s, err := rq.snapshot(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	return h.deleteOnce(rq, s, "Snapshot")
}

func (h *handler) snapshotAction(rq *request) (int, any, error) {
	s, err := rq.snapshot(rq.r.PathValue("id"))
	if err != nil {
		return 0, nil, err
	}
	name, _, err := rq.action()
	if err != nil {
		return 0, nil, err
	}
	switch name {
	case "os-force_delete":
		if !rq.admin {
			return 0, nil, forbidden("Policy doesn't allow volume_extension:snapshot_admin_actions:force_delete to be performed.")
		}
		if err := client.IgnoreNotFound(h.c.Delete(rq.ctx, s)); err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, nil, nil
	case "os-reset_status", "os-update_snapshot_status", "os-unmanage":
		return 0, nil, notImplemented("The %s action is not supported: a snapshot's status is its node's report.", name)
	}
	return 0, nil, badRequest("There is no such action: %s", strings.TrimSpace(name))
}
