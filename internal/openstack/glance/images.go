package glance

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

const patchType = "application/openstack-images-v2.1-json-patch"

func now() string { return time.Now().UTC().Format(time.RFC3339) }

func (rq *request) view(img *storagev1.Image) map[string]any {
	return View(img, rq.project(img.Namespace))
}

func (h *handler) create(w http.ResponseWriter, rq *request) error {
	body, err := io.ReadAll(io.LimitReader(rq.r.Body, 1<<20))
	if err != nil {
		return errorf(http.StatusBadRequest, "read the body: %v", err)
	}
	img, err := NewImage(body, rq.ns, rq.owner, rq.admin)
	if err != nil {
		return err
	}
	all, err := rq.all()
	if err != nil {
		return err
	}
	if id := img.Annotations[AnnotationID]; id != "" {
		for i := range all {
			if ID(&all[i]) == id || string(all[i].UID) == id {
				return errorf(http.StatusConflict, "Image with identifier %s already exists!", id)
			}
		}
	}
	taken := func(n string) bool {
		return slices.ContainsFunc(all, func(o storagev1.Image) bool { return o.Namespace == rq.ns && o.Name == n })
	}
	img.Name = KubeName(img.Annotations[AnnotationName], string(uuid.NewUUID())[:8], taken)
	img.Annotations[AnnotationUpdatedAt] = now()
	err = h.c.Create(rq.ctx, img)
	if apierrors.IsAlreadyExists(err) { // lost a race for the name
		img.Name, img.ResourceVersion = KubeName("", string(uuid.NewUUID())[:8], taken), ""
		err = h.c.Create(rq.ctx, img)
	}
	if err != nil {
		return err
	}
	// Show the phase to kubectl too; the controller leaves uploads alone.
	img.Status.Phase = storagev1.ImageQueued
	if err := h.c.Status().Update(rq.ctx, img); err != nil {
		h.log.Debug("glance: set Queued", "image", img.Name, "err", err)
	}
	w.Header().Set("Location", baseURL(rq.r)+h.prefix+"/v2/images/"+ID(img))
	w.Header().Set("OpenStack-image-import-methods", "web-download")
	writeJSON(w, http.StatusCreated, rq.view(img))
	return nil
}

func (h *handler) show(w http.ResponseWriter, rq *request) error {
	img, err := rq.find(rq.r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("OpenStack-image-import-methods", "web-download")
	writeJSON(w, http.StatusOK, rq.view(img))
	return nil
}

func (h *handler) list(w http.ResponseWriter, rq *request) error {
	query := rq.r.URL.Query()
	q, err := ParseListQuery(query)
	if err != nil {
		return err
	}
	all, err := rq.all()
	if err != nil {
		return err
	}
	var views []map[string]any
	for i := range all {
		img := &all[i]
		if !rq.visible(img) {
			continue
		}
		v := rq.view(img)
		if q.Match(v, img.Namespace == rq.ns) {
			views = append(views, v)
		}
	}
	q.Sort(views)
	page, more, err := q.Page(views)
	if err != nil {
		return err
	}
	if page == nil {
		page = []map[string]any{}
	}
	first := url.Values{}
	for k, v := range query {
		if k != "marker" {
			first[k] = v
		}
	}
	out := map[string]any{"images": page, "schema": "/v2/schemas/images", "first": "/v2/images"}
	if len(first) > 0 {
		out["first"] = "/v2/images?" + first.Encode()
	}
	if more && len(page) > 0 {
		next := url.Values{}
		for k, v := range first {
			next[k] = v
		}
		next.Set("marker", page[len(page)-1]["id"].(string))
		out["next"] = "/v2/images?" + next.Encode()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *handler) patch(w http.ResponseWriter, rq *request) error {
	mt, _, _ := mime.ParseMediaType(rq.r.Header.Get("Content-Type"))
	if mt != patchType && mt != "application/openstack-images-v2.0-json-patch" {
		return errorf(http.StatusUnsupportedMediaType, "Unsupported Content-Type %q: use %s.", mt, patchType)
	}
	body, err := io.ReadAll(io.LimitReader(rq.r.Body, 1<<20))
	if err != nil {
		return errorf(http.StatusBadRequest, "read the body: %v", err)
	}
	ops, err := parsePatch(body, mt != patchType)
	if err != nil {
		return err
	}
	img, err := rq.own(rq.r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := rq.update(img, func(img *storagev1.Image) error {
		if err := ApplyPatch(img, ops, rq.admin); err != nil {
			return err
		}
		img.Annotations[AnnotationUpdatedAt] = now()
		return nil
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, rq.view(img))
	return nil
}

// parsePatch reads a JSON patch: v2.1 ({"op", "path", "value"}) or, with
// v20, v2.0's ({"replace": "/name", "value"}).
func parsePatch(body []byte, v20 bool) ([]PatchOp, error) {
	bad := errorf(http.StatusBadRequest, "The request body must be a JSON array of patch operations.")
	if !v20 {
		var ops []PatchOp
		if err := json.Unmarshal(body, &ops); err != nil {
			return nil, bad
		}
		return ops, nil
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, bad
	}
	var ops []PatchOp
	for _, o := range raw {
		op := PatchOp{Value: o["value"]}
		for _, name := range []string{"add", "replace", "remove"} {
			if p, ok := o[name]; ok {
				op.Op = name
				_ = json.Unmarshal(p, &op.Path)
			}
		}
		ops = append(ops, op)
	}
	return ops, nil
}

func (h *handler) delete(w http.ResponseWriter, rq *request) error {
	id := rq.r.PathValue("id")
	img, err := rq.own(id)
	if err != nil {
		return err
	}
	if img.Annotations[AnnotationProtected] == "true" {
		return errorf(http.StatusForbidden, "Image %s is protected and cannot be deleted.", id)
	}
	if err := h.c.Delete(rq.ctx, img, client.Preconditions{UID: &img.UID}); err != nil {
		if apierrors.IsConflict(err) { // the admission's: VMs boot from it
			return errorf(http.StatusConflict, "Image %s could not be deleted because it is in use: %s", id, h.toError(err).Message)
		}
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *handler) addTag(w http.ResponseWriter, rq *request) error {
	return h.changeTags(w, rq, func(m *model, tag string) error { return m.addTag(tag) })
}

func (h *handler) deleteTag(w http.ResponseWriter, rq *request) error {
	return h.changeTags(w, rq, func(m *model, tag string) error {
		i := slices.Index(m.Tags, tag)
		if i < 0 {
			return errorf(http.StatusNotFound, "Tag %s not found.", tag)
		}
		m.Tags = slices.Delete(m.Tags, i, i+1)
		return nil
	})
}

func (h *handler) changeTags(w http.ResponseWriter, rq *request, change func(*model, string) error) error {
	img, err := rq.own(rq.r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := rq.update(img, func(img *storagev1.Image) error {
		m := readModel(img)
		if err := change(&m, rq.r.PathValue("tag")); err != nil {
			return err
		}
		m.write(img)
		img.Annotations[AnnotationUpdatedAt] = now()
		return nil
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// upload stores PUT .../file's body as the image's bytes: queued ->
// saving -> active, or back to queued when the bytes are refused.
func (h *handler) upload(w http.ResponseWriter, rq *request) error {
	id := rq.r.PathValue("id")
	img, err := rq.own(id)
	if err != nil {
		return err
	}
	if h.store == nil {
		return errorf(http.StatusServiceUnavailable, "This cloud stores no image data.")
	}
	if s := Status(img); s != "queued" || img.Spec.Source != nil && img.Spec.Source.URL != "" {
		return errorf(http.StatusConflict, "Image status transition from %s to saving is not allowed", s)
	}
	// Claim the image: a concurrent upload or import loses the race here.
	img.Status = storagev1.ImageStatus{Phase: storagev1.ImageSaving, Message: uploadingMessage(h.instance)}
	if err := h.c.Status().Update(rq.ctx, img); err != nil {
		if apierrors.IsConflict(err) {
			return errorf(http.StatusConflict, "Image %s is being changed by another request; try again.", id)
		}
		return err
	}
	s, err := storeDisk(rq.ctx, h.store, img.Namespace, img.Name, rq.r.Body, rq.r.ContentLength, h.max)
	if err != nil {
		h.log.Info("glance: upload failed", "image", img.Namespace+"/"+img.Name, "err", err)
		// Back to queued, as Glance does after a failed upload.
		if serr := rq.setStatus(img, func(st *storagev1.ImageStatus) { *st = storagev1.ImageStatus{Phase: storagev1.ImageQueued} }); serr != nil {
			h.log.Error("glance: reset a failed upload", "image", img.Namespace+"/"+img.Name, "err", serr)
		}
		return err
	}
	if err := rq.update(img, func(img *storagev1.Image) error {
		a := img.Annotations
		if a == nil {
			a = map[string]string{}
			img.Annotations = a
		}
		a[AnnotationMD5], a[AnnotationSHA512] = s.md5, s.sha512
		// The format is what the bytes are, whatever was declared.
		a[AnnotationDiskFormat] = s.info.Format
		if a[AnnotationContainerFormat] == "" {
			a[AnnotationContainerFormat] = "bare"
		}
		a[AnnotationUpdatedAt] = now()
		return nil
	}); err != nil {
		return err
	}
	if err := rq.setStatus(img, func(st *storagev1.ImageStatus) {
		*st = storagev1.ImageStatus{
			Phase: storagev1.ImageActive, Format: s.info.Format,
			SizeBytes: s.info.Size, VirtualSizeBytes: s.info.VirtualSize,
			Checksum: s.sha256, Reference: s.reference, Progress: "100%",
		}
	}); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// download streams the image's bytes, or one range of them.
func (h *handler) download(w http.ResponseWriter, rq *request) error {
	id := rq.r.PathValue("id")
	img, err := rq.find(id)
	if err != nil {
		return err
	}
	if Status(img) == "deactivated" && !rq.admin {
		return errorf(http.StatusForbidden, "The requested image has been deactivated. Image data download is forbidden.")
	}
	if !hasData(img) {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if h.store == nil {
		return errorf(http.StatusServiceUnavailable, "This cloud stores no image data.")
	}
	rc, size, err := openDisk(rq.ctx, h.store.Blobs(), img.Status.Reference)
	if err != nil {
		return fmt.Errorf("image %s/%s: %w", img.Namespace, img.Name, err)
	}
	defer rc.Close()
	start, end, whole, ok := ParseRange(rq.r.Header.Get("Range"), size)
	hd := w.Header()
	hd.Set("Content-Type", "application/octet-stream")
	hd.Set("Accept-Ranges", "bytes")
	if !ok {
		hd.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		return errorf(http.StatusRequestedRangeNotSatisfiable, "Requested range not satisfiable")
	}
	code := http.StatusOK
	if whole {
		if md5 := img.Annotations[AnnotationMD5]; md5 != "" {
			hd.Set("Content-MD5", md5)
		}
	} else {
		code = http.StatusPartialContent
		hd.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		if _, err := io.CopyN(io.Discard, rc, start); err != nil {
			return fmt.Errorf("image %s/%s: %w", img.Namespace, img.Name, err)
		}
	}
	n := end - start + 1
	if size == 0 {
		n = 0
	}
	hd.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(code)
	if rq.r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.CopyN(w, rc, n); err != nil {
		h.log.Info("glance: download cut short", "image", img.Namespace+"/"+img.Name, "err", err)
	}
	return nil
}

// importImage starts the web-download import method: the Image's
// spec.source.url, which the image controller fetches.
func (h *handler) importImage(w http.ResponseWriter, rq *request) error {
	var body struct {
		Method struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
		} `json:"method"`
	}
	if err := json.NewDecoder(io.LimitReader(rq.r.Body, 1<<20)).Decode(&body); err != nil {
		return errorf(http.StatusBadRequest, "Malformed JSON in request body.")
	}
	if body.Method.Name != "web-download" {
		return errorf(http.StatusBadRequest, "Import method %s is not valid for this cloud. Valid values are: web-download", body.Method.Name)
	}
	u, err := url.Parse(body.Method.URI)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(body.Method.URI) > 2048 {
		return errorf(http.StatusBadRequest, "URI for web-download must be an http or https URL.")
	}
	id := rq.r.PathValue("id")
	img, err := rq.own(id)
	if err != nil {
		return err
	}
	if s := Status(img); s != "queued" {
		return errorf(http.StatusConflict, "Image %s is %s: only a queued image can be imported into.", id, s)
	}
	if err := rq.update(img, func(img *storagev1.Image) error {
		if s := Status(img); s != "queued" {
			return errorf(http.StatusConflict, "Image %s is %s: only a queued image can be imported into.", id, s)
		}
		img.Spec.Source = &storagev1.ImageSource{URL: body.Method.URI}
		img.Annotations[AnnotationUpdatedAt] = now()
		return nil
	}); err != nil {
		return err
	}
	// Importing now rather than when the controller gets to it; if it got
	// there first, its status stands.
	img.Status = storagev1.ImageStatus{Phase: storagev1.ImageImporting, Progress: "0%"}
	if err := h.c.Status().Update(rq.ctx, img); err != nil && !apierrors.IsConflict(err) {
		h.log.Debug("glance: set Importing", "image", img.Name, "err", err)
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// deactivate (or reactivate) hides an active image's data from non-admins.
func (h *handler) deactivate(on bool) func(http.ResponseWriter, *request) error {
	return func(w http.ResponseWriter, rq *request) error {
		id := rq.r.PathValue("id")
		img, err := rq.own(id)
		if err != nil {
			return err
		}
		if s := Status(img); s != "active" && s != "deactivated" {
			return errorf(http.StatusForbidden, "Not allowed to change the activation of an image in status '%s'", s)
		}
		if err := rq.update(img, func(img *storagev1.Image) error {
			if on {
				img.Annotations[AnnotationDeactivated] = "true"
			} else {
				delete(img.Annotations, AnnotationDeactivated)
			}
			img.Annotations[AnnotationUpdatedAt] = now()
			return nil
		}); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

// members: image sharing with other projects is not implemented, so a
// shared image has none.
func (h *handler) members(w http.ResponseWriter, rq *request) error {
	if _, err := rq.find(rq.r.PathValue("id")); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"members": []any{}, "schema": "/v2/schemas/members"})
	return nil
}

func (h *handler) addMember(_ http.ResponseWriter, rq *request) error {
	if _, err := rq.own(rq.r.PathValue("id")); err != nil {
		return err
	}
	return errorf(http.StatusForbidden, "Image members are not supported by this cloud: make the image public (admin) or community instead.")
}
