// Package registry serves an OCI distribution registry (the subset that
// containerd, crane and skopeo use) from Strata's on-disk blob store, so that
// an image pushed once to the server is pullable by every node without any
// public registry.
//
// Everything lives under one directory: blobs (layers, configs and the
// manifests themselves) in the blob store, tags and repository membership
// as small files under DIR/repositories. A restarted server serves what was
// pushed before. Access is decided by an Authorizer.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/strata-cloud/strata/internal/storage/blob"
)

// Options configure a Registry.
type Options struct {
	// Authorizer decides who may pull and push. Nil means
	// ClientCertPushAuthorizer{}: anyone pulls, verified client certs push.
	Authorizer Authorizer
	// Log receives failures that become 500 responses. The zero Logger
	// discards.
	Log logr.Logger
}

// Registry is an http.Handler serving the OCI distribution API under /v2/.
type Registry struct {
	blobs *blob.Store
	repos repos
	auth  Authorizer
	log   logr.Logger
}

// New returns a registry that keeps its data under dir (created if needed):
// DIR/blobs, DIR/uploads and DIR/repositories.
func New(dir string, opts Options) (*Registry, error) {
	store, err := blob.New(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	auth := opts.Authorizer
	if auth == nil {
		auth = ClientCertPushAuthorizer{}
	}
	return &Registry{
		blobs: store,
		repos: repos{dir: filepath.Join(dir, "repositories")},
		auth:  auth,
		log:   opts.Log,
	}, nil
}

// Blobs returns the blob store the registry serves from.
func (g *Registry) Blobs() *blob.Store { return g.blobs }

var (
	routeManifest = regexp.MustCompile(`^/v2/(.+)/manifests/([^/]+)$`)
	routeUploads  = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/?$`)
	routeUpload   = regexp.MustCompile(`^/v2/(.+)/blobs/uploads/([^/]+)$`)
	routeBlob     = regexp.MustCompile(`^/v2/(.+)/blobs/([^/]+)$`)
	routeTags     = regexp.MustCompile(`^/v2/(.+)/tags/list$`)
)

// ServeHTTP implements http.Handler. Mount it at "/v2/".
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		g.serveBase(w, r)
		return
	case p == "/v2/_catalog":
		g.serveCatalog(w, r)
		return
	}
	type route struct {
		re      *regexp.Regexp
		methods []string
		push    func(method string) bool
		serve   func(w http.ResponseWriter, r *http.Request, name, arg string)
	}
	isWrite := func(m string) bool { return m != http.MethodGet && m != http.MethodHead }
	always := func(string) bool { return true }
	routes := []route{
		{routeManifest, []string{"GET", "HEAD", "PUT", "DELETE"}, isWrite, g.serveManifest},
		{routeUploads, []string{"POST"}, always, func(w http.ResponseWriter, r *http.Request, name, _ string) { g.startUpload(w, r, name) }},
		{routeUpload, []string{"GET", "PATCH", "PUT", "DELETE"}, always, g.serveUpload},
		{routeBlob, []string{"GET", "HEAD", "DELETE"}, isWrite, g.serveBlob},
		{routeTags, []string{"GET"}, isWrite, func(w http.ResponseWriter, r *http.Request, name, _ string) { g.serveTags(w, r, name) }},
	}
	for _, rt := range routes {
		m := rt.re.FindStringSubmatch(p)
		if m == nil {
			continue
		}
		name, arg := m[1], ""
		if len(m) > 2 {
			arg = m[2]
		}
		if !validName(name) {
			writeError(w, http.StatusBadRequest, codeNameInvalid, "invalid repository name", map[string]string{"name": name})
			return
		}
		method := r.Method
		if method == http.MethodHead && !containsString(rt.methods, "HEAD") {
			method = "" // fall through to 405
		}
		if !containsString(rt.methods, method) {
			w.Header().Set("Allow", strings.Join(rt.methods, ", "))
			writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed", nil)
			return
		}
		if !g.authorize(w, r, name, rt.push(r.Method)) {
			return
		}
		rt.serve(w, r, name, arg)
		return
	}
	writeError(w, http.StatusNotFound, codeNameUnknown, "no such endpoint", map[string]string{"path": p})
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// authorize asks the Authorizer and answers 401/403 itself when refused.
func (g *Registry) authorize(w http.ResponseWriter, r *http.Request, repo string, push bool) bool {
	err := g.auth.Authorize(r, repo, push)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrUnauthorized):
		writeError(w, http.StatusUnauthorized, codeUnauthorized, err.Error(), nil)
	default:
		writeError(w, http.StatusForbidden, codeDenied, err.Error(), nil)
	}
	return false
}

// internalError logs err and answers 500.
func (g *Registry) internalError(w http.ResponseWriter, r *http.Request, err error) {
	g.log.Error(err, "registry request failed", "method", r.Method, "path", r.URL.Path)
	writeError(w, http.StatusInternalServerError, codeUnknown, "internal error", nil)
}

func (g *Registry) serveBase(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed", nil)
		return
	}
	if !g.authorize(w, r, "", false) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "{}")
}

// ---- blobs ----

func (g *Registry) serveBlob(w http.ResponseWriter, r *http.Request, name, ref string) {
	ctx := r.Context()
	d, err := blob.ParseDigest(ref)
	switch {
	case errors.Is(err, blob.ErrUnsupportedDigest):
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob unknown to registry", map[string]string{"digest": ref})
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "invalid digest", map[string]string{"digest": ref})
		return
	}
	if r.Method == http.MethodDelete {
		// Blobs are shared by all repositories; removing one here would
		// break others. Space is reclaimed by garbage collection instead.
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "blob deletion is not supported", nil)
		return
	}
	rc, info, err := g.blobs.Open(ctx, d)
	if errors.Is(err, blob.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUnknown, "blob unknown to registry", map[string]string{"digest": ref})
		return
	}
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", info.Digest.String())
	h.Set("Etag", `"`+info.Digest.String()+`"`)
	h.Set("Cache-Control", "max-age=31536000") // content-addressed: never changes
	// ServeContent does Range, If-Range and HEAD for us.
	http.ServeContent(&rangeErrorWriter{ResponseWriter: w}, r, "", time.Time{}, rc)
}

// ---- uploads ----

func (g *Registry) uploadLocation(name, id string) string {
	return "/v2/" + name + "/blobs/uploads/" + id
}

func (g *Registry) blobLocation(name string, d blob.Digest) string {
	return "/v2/" + name + "/blobs/" + d.String()
}

// uploadAccepted answers 202 with where to continue an upload and how much
// the registry has.
func (g *Registry) uploadAccepted(w http.ResponseWriter, name string, u *blob.Upload, status int) {
	h := w.Header()
	h.Set("Location", g.uploadLocation(name, u.ID()))
	h.Set("Docker-Upload-UUID", u.ID())
	end := u.Size() - 1
	if end < 0 {
		end = 0 // the reference registry says 0-0 for an empty upload
	}
	h.Set("Range", fmt.Sprintf("0-%d", end))
	h.Set("Content-Length", "0")
	w.WriteHeader(status)
}

// blobCreated answers 201 for a committed blob.
func (g *Registry) blobCreated(w http.ResponseWriter, name string, d blob.Digest) {
	h := w.Header()
	h.Set("Location", g.blobLocation(name, d))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// startUpload handles POST /v2/<name>/blobs/uploads/: a cross-repository
// mount, a monolithic upload (?digest=), or the start of a chunked one.
func (g *Registry) startUpload(w http.ResponseWriter, r *http.Request, name string) {
	ctx := r.Context()
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		// All repositories share one blob store, so a mount of a blob
		// the registry holds is a no-op. Otherwise fall through to a
		// regular upload, as the spec allows.
		if d, err := blob.ParseDigest(mount); err == nil {
			if _, err := g.blobs.Stat(ctx, d); err == nil {
				g.blobCreated(w, name, d)
				return
			}
		}
	} else if dg := q.Get("digest"); dg != "" {
		d, ok := g.parseUploadDigest(w, dg)
		if !ok {
			return
		}
		g.commitBody(w, r, name, d, nil)
		return
	}
	u, err := g.blobs.NewUpload(ctx)
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	if err := u.Close(); err != nil {
		u.Cancel()
		g.internalError(w, r, err)
		return
	}
	g.uploadAccepted(w, name, u, http.StatusAccepted)
}

func (g *Registry) parseUploadDigest(w http.ResponseWriter, s string) (blob.Digest, bool) {
	d, err := blob.ParseDigest(s)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error(), map[string]string{"digest": s})
		return "", false
	}
	return d, true
}

// commitBody appends the request body to u (a new upload when nil) and
// commits it as blob d.
func (g *Registry) commitBody(w http.ResponseWriter, r *http.Request, name string, d blob.Digest, u *blob.Upload) {
	ctx := r.Context()
	var err error
	if u == nil {
		if u, err = g.blobs.NewUpload(ctx); err != nil {
			g.internalError(w, r, err)
			return
		}
	}
	if _, err := io.Copy(u, r.Body); err != nil {
		u.Cancel()
		writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading upload: "+err.Error(), nil)
		return
	}
	info, err := u.Commit(ctx, d)
	if errors.Is(err, blob.ErrDigestMismatch) {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, err.Error(), map[string]string{"digest": d.String()})
		return
	}
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	g.blobCreated(w, name, info.Digest)
}

// serveUpload handles GET/PATCH/PUT/DELETE /v2/<name>/blobs/uploads/<id>.
func (g *Registry) serveUpload(w http.ResponseWriter, r *http.Request, name, id string) {
	ctx := r.Context()
	var want blob.Digest
	if r.Method == http.MethodPut {
		// Check the digest before touching the upload, so a client can
		// retry with a correct one.
		var ok bool
		if want, ok = g.parseUploadDigest(w, r.URL.Query().Get("digest")); !ok {
			return
		}
	}
	u, err := g.blobs.ResumeUpload(ctx, id)
	if errors.Is(err, blob.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeBlobUploadUnknown, "blob upload unknown to registry", map[string]string{"uuid": id})
		return
	}
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	switch r.Method {
	case http.MethodGet:
		u.Close()
		g.uploadAccepted(w, name, u, http.StatusNoContent)
	case http.MethodDelete:
		if err := u.Cancel(); err != nil {
			g.internalError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPatch:
		defer u.Close()
		if cr := r.Header.Get("Content-Range"); cr != "" {
			start, ok := parseContentRangeStart(cr)
			if !ok || start != u.Size() {
				w.Header().Set("Location", g.uploadLocation(name, u.ID()))
				w.Header().Set("Range", fmt.Sprintf("0-%d", max(u.Size()-1, 0)))
				writeError(w, http.StatusRequestedRangeNotSatisfiable, codeRangeInvalid,
					fmt.Sprintf("chunk must start at %d", u.Size()), map[string]string{"Content-Range": cr})
				return
			}
		}
		if _, err := io.Copy(u, r.Body); err != nil {
			// What arrived is kept; the client may resume from Range.
			writeError(w, http.StatusBadRequest, codeBlobUploadInvalid, "reading chunk: "+err.Error(), nil)
			return
		}
		if err := u.Close(); err != nil {
			g.internalError(w, r, err)
			return
		}
		g.uploadAccepted(w, name, u, http.StatusAccepted)
	case http.MethodPut:
		g.commitBody(w, r, name, want, u)
	}
}

// parseContentRangeStart reads the start of a chunk's "start-end" range
// (optionally prefixed with "bytes ").
func parseContentRangeStart(s string) (int64, bool) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "bytes ")
	start, _, ok := strings.Cut(s, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(start, 10, 64)
	return n, err == nil && n >= 0
}

// ---- manifests ----

// resolveManifest turns a tag or digest into a digest and media type of
// a manifest in repository name.
func (g *Registry) resolveManifest(ctx context.Context, name, ref string) (blob.Digest, string, error) {
	d, err := g.parseRef(ref)
	if err != nil {
		return "", "", err
	}
	if d == "" {
		if d, err = g.repos.resolveTag(name, ref); err != nil {
			return "", "", err
		}
	}
	mt, err := g.repos.linked(name, d)
	if err != nil {
		return "", "", err
	}
	return d, mt, nil
}

// parseRef returns the digest a manifest reference names, or "" for a
// valid tag.
func (g *Registry) parseRef(ref string) (blob.Digest, error) {
	if validTag(ref) {
		return "", nil
	}
	d, err := blob.ParseDigest(ref)
	if errors.Is(err, blob.ErrUnsupportedDigest) {
		return "", fs.ErrNotExist // cannot be here
	}
	if err != nil {
		return "", &manifestError{code: codeDigestInvalid, msg: fmt.Sprintf("%q is neither a tag nor a digest", ref)}
	}
	return d, nil
}

func (g *Registry) serveManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		g.getManifest(w, r, name, ref)
	case http.MethodPut:
		g.putManifest(w, r, name, ref)
	case http.MethodDelete:
		g.deleteManifest(w, r, name, ref)
	}
}

// manifestLookupError answers for a failed resolveManifest.
func (g *Registry) manifestLookupError(w http.ResponseWriter, r *http.Request, ref string, err error) {
	var me *manifestError
	switch {
	case errors.As(err, &me):
		writeError(w, http.StatusBadRequest, me.code, me.msg, nil)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, blob.ErrNotFound):
		writeError(w, http.StatusNotFound, codeManifestUnknown, "manifest unknown to registry", map[string]string{"reference": ref})
	default:
		g.internalError(w, r, err)
	}
}

func (g *Registry) getManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	ctx := r.Context()
	d, mt, err := g.resolveManifest(ctx, name, ref)
	if err != nil {
		g.manifestLookupError(w, r, ref, err)
		return
	}
	body, err := g.blobs.ReadAll(ctx, d)
	if err != nil {
		g.manifestLookupError(w, r, ref, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func (g *Registry) putManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	ctx := r.Context()
	refDigest, err := g.parseRef(ref)
	if errors.Is(err, fs.ErrNotExist) {
		writeError(w, http.StatusBadRequest, codeDigestInvalid, "unsupported digest algorithm", map[string]string{"reference": ref})
		return
	}
	if err != nil {
		g.manifestLookupError(w, r, ref, err)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeManifestInvalid, "reading manifest: "+err.Error(), nil)
		return
	}
	if len(body) > maxManifestBytes {
		writeError(w, http.StatusRequestEntityTooLarge, codeSizeInvalid, fmt.Sprintf("manifest larger than %d bytes", maxManifestBytes), nil)
		return
	}
	tag := ""
	if refDigest == "" {
		tag = ref
	}
	d, err := g.storeManifest(ctx, name, tag, refDigest, r.Header.Get("Content-Type"), body)
	if err != nil {
		var me *manifestError
		if errors.As(err, &me) {
			var detail any // no "detail": null
			if me.detail != nil {
				detail = me.detail
			}
			writeError(w, http.StatusBadRequest, me.code, me.msg, detail)
			return
		}
		g.internalError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Location", "/v2/"+name+"/manifests/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// PutManifest stores a manifest in repository name, tagged tag unless
// that is empty, as a push of it would: everything it references must be
// in the store already. It is how Strata's own parts publish what they
// wrote into Blobs.
func (g *Registry) PutManifest(ctx context.Context, name, tag, mediaType string, body []byte) (blob.Digest, error) {
	if !validName(name) {
		return "", fmt.Errorf("invalid repository name %q", name)
	}
	if tag != "" && !validTag(tag) {
		return "", fmt.Errorf("invalid tag %q", tag)
	}
	return g.storeManifest(ctx, name, tag, "", mediaType, body)
}

// storeManifest validates a manifest body and stores it in repository
// name, tagged tag unless that is empty. want, when set, is the digest the
// body must have. Refusals are *manifestError.
func (g *Registry) storeManifest(ctx context.Context, name, tag string, want blob.Digest, contentType string, body []byte) (blob.Digest, error) {
	d := blob.FromBytes(body)
	if want != "" && want != d {
		return "", &manifestError{code: codeDigestInvalid, msg: fmt.Sprintf("manifest digest is %s, not %s", d, want)}
	}
	pm, err := parseManifest(contentType, body)
	if err != nil {
		return "", err
	}
	// Everything a manifest points to must be here first.
	for _, b := range pm.Blobs {
		if _, err := g.blobs.Stat(ctx, b); err != nil {
			return "", &manifestError{code: codeManifestBlobUnknown, msg: "manifest references a blob unknown to registry", detail: map[string]string{"digest": b.String()}}
		}
	}
	for _, c := range pm.Children {
		cd := blob.Digest(c.Digest) // validated by parseManifest
		if _, err := g.repos.linked(name, cd); err == nil {
			continue
		}
		if _, err := g.blobs.Stat(ctx, cd); err != nil {
			return "", &manifestError{code: codeManifestBlobUnknown, msg: "index references a manifest unknown to registry", detail: map[string]string{"digest": c.Digest}}
		}
		// Pushed to another repository: make it reachable from this one.
		mt := c.MediaType
		if mt == "" {
			mt = MediaTypeOCIManifest
		}
		if err := g.repos.link(name, cd, mt); err != nil {
			return "", err
		}
	}
	if _, err := g.blobs.Put(ctx, d, bytes.NewReader(body)); err != nil {
		return "", err
	}
	if err := g.repos.link(name, d, pm.MediaType); err != nil {
		return "", err
	}
	if tag != "" {
		if err := g.repos.setTag(name, tag, d); err != nil {
			return "", err
		}
	}
	return d, nil
}

// deleteManifest removes a tag, or a manifest (and the tags pointing to
// it) from the repository. The bytes stay until garbage collection.
func (g *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, name, ref string) {
	d, err := g.parseRef(ref)
	if err == nil && d == "" {
		err = g.repos.deleteTag(name, ref)
	} else if err == nil {
		if err = g.repos.unlink(name, d); err == nil {
			err = g.repos.untagDigest(name, d)
		}
	}
	if err != nil {
		g.manifestLookupError(w, r, ref, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// ---- listings ----

func (g *Registry) serveTags(w http.ResponseWriter, r *http.Request, name string) {
	if !g.repos.exists(name) {
		writeError(w, http.StatusNotFound, codeNameUnknown, "repository name not known to registry", map[string]string{"name": name})
		return
	}
	tags, err := g.repos.tags(name)
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	g.writeList(w, r, "/v2/"+name+"/tags/list", tags, func(page []string) any {
		return struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{name, page}
	})
}

func (g *Registry) serveCatalog(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeError(w, http.StatusMethodNotAllowed, codeUnsupported, "method not allowed", nil)
		return
	}
	if !g.authorize(w, r, "", false) {
		return
	}
	names, err := g.repos.list()
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	g.writeList(w, r, "/v2/_catalog", names, func(page []string) any {
		return struct {
			Repositories []string `json:"repositories"`
		}{page}
	})
}

// writeList answers a paginated listing (?n=&last=), with a Link header
// to the next page when there is one.
func (g *Registry) writeList(w http.ResponseWriter, r *http.Request, path string, all []string, doc func([]string) any) {
	q := r.URL.Query()
	page, next, err := paginate(all, q.Get("n"), q.Get("last"))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeUnsupported, err.Error(), nil)
		return
	}
	if next != "" {
		v := url.Values{"n": {q.Get("n")}, "last": {next}}
		w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, v.Encode()))
	}
	b, err := json.Marshal(doc(page))
	if err != nil {
		g.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Write(b)
}

// paginate returns the entries of sorted list after last, at most n of
// them (all when n is empty), and the last entry returned when more follow.
func paginate(list []string, n, last string) (page []string, next string, err error) {
	start := 0
	if last != "" {
		for start < len(list) && list[start] <= last {
			start++
		}
	}
	page = list[start:]
	if n == "" {
		return page, "", nil
	}
	limit, err := strconv.Atoi(n)
	if err != nil || limit < 0 {
		return nil, "", fmt.Errorf("invalid n %q", n)
	}
	if limit < len(page) {
		page = page[:limit]
		if limit > 0 {
			next = page[limit-1]
		}
	}
	return page, next, nil
}
