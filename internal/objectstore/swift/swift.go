// Package swift is the OpenStack Swift API face of the object store: an
// account per Keystone project (AUTH_<project id>), containers, objects,
// static and dynamic large objects, temp URLs and /info, authenticated by
// X-Auth-Token.
package swift

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// Config is what the Swift API needs.
type Config struct {
	// Store holds the containers and objects (shared with the S3 face).
	Store *objectstore.Store
	// Authenticator validates X-Auth-Token.
	Authenticator auth.Authenticator
	// Prefix the API is mounted at (Server.Mount strips it); empty:
	// /object-store. Temp URL signatures may cover the path with or
	// without it.
	Prefix string
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

type handler struct {
	store  *objectstore.Store
	authn  auth.Authenticator
	prefix string
	now    func() time.Time
}

// Handler serves the Swift API: GET /info and /v1/AUTH_<project>/...,
// with paths as Server.Mount passes them (prefix stripped).
func Handler(cfg Config) http.Handler {
	h := &handler{store: cfg.Store, authn: cfg.Authenticator, prefix: "/" + strings.Trim(cfg.Prefix, "/"), now: cfg.Now}
	if h.prefix == "/" {
		h.prefix = "/object-store"
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// AccountOf is the account of a project.
func AccountOf(projectID string) string { return "AUTH_" + projectID }

type request struct {
	w                          http.ResponseWriter
	r                          *http.Request
	q                          url.Values
	account, container, object string
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b [10]byte
	rand.Read(b[:])
	txid := "tx" + hex.EncodeToString(b[:])
	w.Header().Set("X-Trans-Id", txid)
	w.Header().Set("X-Openstack-Request-Id", txid)
	p := r.URL.Path
	if p == "/info" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			fail(w, http.StatusMethodNotAllowed, "")
			return
		}
		writeJSON(w, r, http.StatusOK, info)
		return
	}
	rest, ok := strings.CutPrefix(p, "/v1/")
	if !ok {
		fail(w, http.StatusNotFound, "")
		return
	}
	parts := strings.SplitN(rest, "/", 3)
	rq := &request{w: w, r: r, q: r.URL.Query(), account: parts[0]}
	if len(parts) > 1 {
		rq.container = parts[1]
	}
	if len(parts) > 2 {
		rq.object = parts[2]
	}
	if rq.account == "" || len(parts) == 3 && rq.container == "" {
		fail(w, http.StatusPreconditionFailed, "Invalid path")
		return
	}
	if rq.container != "" && !objectstore.ValidContainer(rq.container) {
		fail(w, http.StatusPreconditionFailed, "Invalid container name")
		return
	}
	if rq.object == "" && len(parts) == 3 && r.Method != http.MethodGet {
		fail(w, http.StatusPreconditionFailed, "Invalid object name")
		return
	}

	if rq.object != "" && rq.q.Get("temp_url_sig") != "" {
		if !h.tempURLValid(rq) {
			fail(w, http.StatusUnauthorized, "Temp URL invalid")
			return
		}
		// A temp URL reaches one object: no copies from others, no
		// manifests pointing at others.
		if _, ok := rq.q["multipart-manifest"]; ok {
			fail(w, http.StatusBadRequest, "multipart-manifest is not allowed with a temp URL")
			return
		}
		r.Header.Del("X-Copy-From")
		r.Header.Del("X-Object-Manifest")
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodPut:
			h.object(rq)
		default:
			fail(w, http.StatusUnauthorized, "Temp URL invalid")
		}
		return
	}

	token := r.Header.Get("X-Auth-Token")
	if token == "" {
		token = r.Header.Get("X-Storage-Token")
	}
	if token == "" || h.authn == nil {
		fail(w, http.StatusUnauthorized, "")
		return
	}
	id, err := h.authn.Authenticate(r.Context(), token)
	if err != nil {
		fail(w, http.StatusUnauthorized, "")
		return
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if id.ProjectID == "" || AccountOf(id.ProjectID) != rq.account || !id.HasRole("reader") || !read && !id.HasRole("member") {
		fail(w, http.StatusForbidden, "")
		return
	}
	switch {
	case rq.container == "":
		h.account(rq)
	case rq.object == "":
		h.containerOp(rq)
	default:
		h.object(rq)
	}
}

// info is what GET /info answers: the limits and middleware clients check.
var info = map[string]any{
	"swift": map[string]any{
		"version":                   "2.30.0",
		"max_file_size":             objectstore.MaxObjectSize,
		"max_object_name_length":    objectstore.MaxNameLength,
		"container_listing_limit":   10000,
		"account_listing_limit":     10000,
		"max_meta_name_length":      128,
		"max_meta_value_length":     256,
		"max_meta_count":            90,
		"max_meta_overall_size":     4096,
		"max_header_size":           8192,
		"max_container_name_length": objectstore.MaxContainerLength,
		"strict_cors_mode":          true,
		"policies":                  []map[string]any{{"name": "Policy-0", "default": true}},
	},
	"slo": map[string]any{
		"max_manifest_segments": 1000,
		"max_manifest_size":     8 << 20,
		"min_segment_size":      1,
		"yield_frequency":       10,
		"allow_async_delete":    false,
	},
	"dlo":     map[string]any{"max_segments": 10000},
	"tempurl": map[string]any{"methods": []string{"GET", "HEAD", "PUT"}, "incoming_remove_headers": []string{"x-timestamp"}, "outgoing_remove_headers": []string{"x-object-meta-*"}, "allowed_digests": []string{"sha1", "sha256", "sha512"}},
}

// statusText is Swift's plain-text error body for each status.
var statusText = map[int]string{
	http.StatusBadRequest:                   "Bad Request",
	http.StatusUnauthorized:                 "Unauthorized: This server could not verify that you are authorized to access the document you requested.",
	http.StatusForbidden:                    "Forbidden: Access was denied to this resource.",
	http.StatusNotFound:                     "Not Found: The resource could not be found.",
	http.StatusMethodNotAllowed:             "Method Not Allowed: The method is not allowed for this resource.",
	http.StatusConflict:                     "Conflict: There was a conflict when trying to complete your request.",
	http.StatusLengthRequired:               "Length Required",
	http.StatusPreconditionFailed:           "Precondition Failed: A precondition for this request was not met.",
	http.StatusRequestEntityTooLarge:        "Request Entity Too Large: The body of your request was too large for this server.",
	http.StatusUnprocessableEntity:          "Unprocessable Entity: Unable to process the contained instructions",
	http.StatusRequestedRangeNotSatisfiable: "Requested Range Not Satisfiable: The Range requested is not available.",
	http.StatusInternalServerError:          "Internal Server Error",
}

// fail writes a Swift error: a plain-text body, detail replacing the
// default text when set.
func fail(w http.ResponseWriter, status int, detail string) {
	body := statusText[status]
	if body == "" {
		body = http.StatusText(status)
	}
	if detail != "" {
		body = detail
	}
	w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func storeFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, objectstore.ErrNoContainer), errors.Is(err, objectstore.ErrNoObject):
		fail(w, http.StatusNotFound, "")
	case errors.Is(err, objectstore.ErrNotEmpty):
		fail(w, http.StatusConflict, "")
	case errors.Is(err, objectstore.ErrBadDigest):
		fail(w, http.StatusUnprocessableEntity, "")
	case errors.Is(err, objectstore.ErrEntityTooBig):
		fail(w, http.StatusRequestEntityTooLarge, "")
	case errors.Is(err, objectstore.ErrIncomplete), errors.Is(err, io.ErrUnexpectedEOF):
		fail(w, 499, "Client Disconnect")
	case errors.Is(err, objectstore.ErrInvalidName):
		fail(w, http.StatusPreconditionFailed, "Invalid name")
	case errors.Is(err, objectstore.ErrSegment):
		fail(w, http.StatusConflict, "A segment of this large object is missing or changed.")
	default:
		fail(w, http.StatusInternalServerError, "")
	}
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

func timestamp(t time.Time) string {
	return fmt.Sprintf("%d.%05d", t.Unix(), t.Nanosecond()/10000)
}

func listTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000") }

// metaHeaders collects X-<kind>-Meta-* (and X-Remove-<kind>-Meta-*, as
// empty values) from a request.
func metaHeaders(r *http.Request, kind string) map[string]string {
	pfx, rm := "x-"+kind+"-meta-", "x-remove-"+kind+"-meta-"
	var m map[string]string
	for k, vs := range r.Header {
		lk := strings.ToLower(k)
		name, val := "", ""
		if n, ok := strings.CutPrefix(lk, pfx); ok {
			name, val = n, vs[0]
		} else if n, ok := strings.CutPrefix(lk, rm); ok {
			name = n
		} else {
			continue
		}
		if m == nil {
			m = map[string]string{}
		}
		m[name] = val
	}
	return m
}

func setMeta(w http.ResponseWriter, kind string, meta map[string]string) {
	for k, v := range meta {
		w.Header()[http.CanonicalHeaderKey("X-"+kind+"-Meta-"+k)] = []string{v}
	}
}

// listFormat is json or plain (the default; xml is answered as plain).
func listFormat(r *http.Request, q url.Values) string {
	f := q.Get("format")
	if f == "" && strings.Contains(r.Header.Get("Accept"), "application/json") {
		f = "json"
	}
	if f != "json" {
		f = "plain"
	}
	return f
}

func listOptions(q url.Values) (objectstore.ListOptions, bool) {
	opt := objectstore.ListOptions{Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"), Marker: q.Get("marker"), EndMarker: q.Get("end_marker"), Limit: 10000}
	if p, ok := q["path"]; ok && len(p) > 0 {
		opt.Prefix, opt.Delimiter = strings.TrimSuffix(p[0], "/"), "/"
		if opt.Prefix != "" {
			opt.Prefix += "/"
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 10000 {
			return opt, false
		}
		opt.Limit = n
	}
	if q.Get("reverse") != "" {
		// Not supported: answered in forward order.
		_ = 0
	}
	return opt, true
}

func (h *handler) account(rq *request) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a, err := h.store.Account(ctx, rq.account)
		if err != nil {
			storeFail(w, err)
			return
		}
		hd := w.Header()
		hd.Set("X-Account-Container-Count", strconv.FormatInt(a.Containers, 10))
		hd.Set("X-Account-Object-Count", strconv.FormatInt(a.Objects, 10))
		hd.Set("X-Account-Bytes-Used", strconv.FormatInt(a.Bytes, 10))
		hd.Set("X-Timestamp", timestamp(time.Unix(0, 0)))
		hd.Set("X-Put-Timestamp", timestamp(time.Unix(0, 0)))
		hd.Set("X-Account-Storage-Policy-Policy-0-Container-Count", strconv.FormatInt(a.Containers, 10))
		setMeta(w, "Account", a.Meta)
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		opt, ok := listOptions(rq.q)
		if !ok {
			fail(w, http.StatusPreconditionFailed, "Value of limit must be a positive integer up to 10000")
			return
		}
		opt.Delimiter = ""
		cs, _, err := h.store.ListContainers(ctx, rq.account, opt)
		if err != nil {
			storeFail(w, err)
			return
		}
		if opt.Limit == 0 {
			cs = nil
		}
		if listFormat(r, rq.q) == "json" {
			out := make([]map[string]any, 0, len(cs))
			for _, c := range cs {
				out = append(out, map[string]any{"name": c.Name, "count": c.Objects, "bytes": c.Bytes, "last_modified": listTime(c.Created)})
			}
			writeJSON(w, r, http.StatusOK, out)
			return
		}
		var b strings.Builder
		for _, c := range cs {
			b.WriteString(c.Name + "\n")
		}
		plain(w, b.String())
	case http.MethodPost:
		if err := h.store.UpdateAccountMeta(ctx, rq.account, metaHeaders(r, "account")); err != nil {
			storeFail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		fail(w, http.StatusMethodNotAllowed, "")
	}
}

// plain answers a plain listing: 204 when empty, as Swift.
func plain(w http.ResponseWriter, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if body == "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, body)
}

func (h *handler) containerOp(rq *request) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	switch r.Method {
	case http.MethodPut:
		created, err := h.store.CreateContainer(ctx, rq.account, rq.container, metaHeaders(r, "container"))
		if err != nil {
			storeFail(w, err)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		if created {
			w.WriteHeader(http.StatusCreated)
		} else {
			w.WriteHeader(http.StatusAccepted)
		}
	case http.MethodPost:
		if err := h.store.UpdateContainerMeta(ctx, rq.account, rq.container, metaHeaders(r, "container")); err != nil {
			storeFail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		if err := h.store.DeleteContainer(ctx, rq.account, rq.container); err != nil {
			storeFail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodGet, http.MethodHead:
		c, err := h.store.Container(ctx, rq.account, rq.container)
		if err != nil {
			storeFail(w, err)
			return
		}
		hd := w.Header()
		hd.Set("X-Container-Object-Count", strconv.FormatInt(c.Objects, 10))
		hd.Set("X-Container-Bytes-Used", strconv.FormatInt(c.Bytes, 10))
		hd.Set("X-Timestamp", timestamp(c.Created))
		hd.Set("X-Put-Timestamp", timestamp(c.Created))
		hd.Set("X-Storage-Policy", "Policy-0")
		hd.Set("Last-Modified", c.Created.UTC().Format(http.TimeFormat))
		setMeta(w, "Container", c.Meta)
		if r.Method == http.MethodHead {
			hd.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		opt, ok := listOptions(rq.q)
		if !ok {
			fail(w, http.StatusPreconditionFailed, "Value of limit must be a positive integer up to 10000")
			return
		}
		var es []objectstore.Entry
		if opt.Limit > 0 {
			es, _, err = h.store.List(ctx, rq.account, rq.container, opt)
			if err != nil {
				storeFail(w, err)
				return
			}
		}
		if listFormat(r, rq.q) == "json" {
			out := make([]map[string]any, 0, len(es))
			for _, e := range es {
				if e.Subdir != "" {
					out = append(out, map[string]any{"subdir": e.Subdir})
					continue
				}
				etag, ct := e.ETag, e.ContentType
				out = append(out, map[string]any{"name": e.Name, "hash": etag, "bytes": e.Size, "content_type": ct, "last_modified": listTime(e.Modified)})
			}
			writeJSON(w, r, http.StatusOK, out)
			return
		}
		var b strings.Builder
		for _, e := range es {
			if e.Subdir != "" {
				b.WriteString(e.Subdir + "\n")
			} else {
				b.WriteString(e.Name + "\n")
			}
		}
		plain(w, b.String())
	default:
		fail(w, http.StatusMethodNotAllowed, "")
	}
}

func md5hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// tempURLValid checks temp_url_sig and temp_url_expires against the
// account's and container's Temp-URL-Key(-2).
func (h *handler) tempURLValid(rq *request) bool {
	q := rq.q
	exp, err := strconv.ParseInt(q.Get("temp_url_expires"), 10, 64)
	if err != nil {
		t, terr := time.Parse("2006-01-02T15:04:05Z", q.Get("temp_url_expires"))
		if terr != nil {
			return false
		}
		exp = t.Unix()
	}
	if h.now().Unix() >= exp {
		return false
	}
	sig := q.Get("temp_url_sig")
	var newHash func() hash.Hash
	var want []byte
	if alg, b64, ok := strings.Cut(sig, ":"); ok {
		switch alg {
		case "sha1":
			newHash = sha1.New
		case "sha256":
			newHash = sha256.New
		case "sha512":
			newHash = sha512.New
		default:
			return false
		}
		want, err = base64.URLEncoding.DecodeString(b64 + strings.Repeat("=", (4-len(b64)%4)%4))
		if err != nil {
			want, err = base64.StdEncoding.DecodeString(b64)
		}
	} else {
		switch len(sig) {
		case 40:
			newHash = sha1.New
		case 64:
			newHash = sha256.New
		case 128:
			newHash = sha512.New
		default:
			return false
		}
		want, err = hex.DecodeString(sig)
	}
	if err != nil {
		return false
	}
	var keys []string
	ctx := rq.r.Context()
	if a, err := h.store.Account(ctx, rq.account); err == nil {
		keys = append(keys, a.Meta["temp-url-key"], a.Meta["temp-url-key-2"])
	}
	if c, err := h.store.Container(ctx, rq.account, rq.container); err == nil {
		keys = append(keys, c.Meta["temp-url-key"], c.Meta["temp-url-key-2"])
	}
	expires := q.Get("temp_url_expires")
	rel := "/v1/" + rq.account + "/" + rq.container + "/" + rq.object
	paths := []string{rel, h.prefix + rel}
	methods := []string{rq.r.Method}
	if rq.r.Method == http.MethodHead {
		methods = []string{"HEAD", "GET", "PUT", "POST"}
	}
	for _, k := range keys {
		if k == "" {
			continue
		}
		for _, m := range methods {
			for _, p := range paths {
				mac := hmac.New(newHash, []byte(k))
				fmt.Fprintf(mac, "%s\n%s\n%s", m, expires, p)
				if hmac.Equal(mac.Sum(nil), want) {
					return true
				}
			}
		}
	}
	return false
}

func (h *handler) object(rq *request) {
	switch rq.r.Method {
	case http.MethodGet, http.MethodHead:
		h.getObject(rq)
	case http.MethodPut:
		h.putObject(rq)
	case http.MethodPost:
		h.postObject(rq)
	case http.MethodDelete:
		h.deleteObject(rq)
	case "COPY":
		dst := rq.r.Header.Get("Destination")
		dst, _ = url.PathUnescape(dst)
		dc, do, ok := strings.Cut(strings.TrimPrefix(dst, "/"), "/")
		if !ok || dc == "" || do == "" {
			fail(rq.w, http.StatusPreconditionFailed, "Destination header must be of the form <container name>/<object name>")
			return
		}
		h.copy(rq, rq.container, rq.object, dc, do)
	default:
		fail(rq.w, http.StatusMethodNotAllowed, "")
	}
}

// objectMeta reads the headers an object keeps.
func objectMeta(r *http.Request) (map[string]string, map[string]string) {
	meta := metaHeaders(r, "object")
	for k, v := range meta {
		if v == "" {
			delete(meta, k)
		}
	}
	var hdrs map[string]string
	for _, k := range []string{"Content-Disposition", "Content-Encoding", "Cache-Control", "Expires", "Content-Language"} {
		if v := r.Header.Get(k); v != "" {
			if hdrs == nil {
				hdrs = map[string]string{}
			}
			hdrs[k] = v
		}
	}
	return meta, hdrs
}

func contentType(r *http.Request, name string) string {
	if ct := r.Header.Get("Content-Type"); ct != "" && r.Header.Get("X-Detect-Content-Type") != "true" {
		return ct
	}
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		return ct
	}
	return "application/octet-stream"
}

func (h *handler) putObject(rq *request) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	if src := r.Header.Get("X-Copy-From"); src != "" {
		src, _ = url.PathUnescape(src)
		sc, so, ok := strings.Cut(strings.TrimPrefix(src, "/"), "/")
		if !ok || sc == "" || so == "" {
			fail(w, http.StatusPreconditionFailed, "X-Copy-From header must be of the form <container name>/<object name>")
			return
		}
		h.copy(rq, sc, so, rq.container, rq.object)
		return
	}
	if r.ContentLength < 0 && !strings.EqualFold(strings.Join(r.TransferEncoding, ","), "chunked") {
		fail(w, http.StatusLengthRequired, "")
		return
	}
	meta, hdrs := objectMeta(r)
	opt := objectstore.PutOptions{ContentType: contentType(r, rq.object), Meta: meta, Headers: hdrs, Size: r.ContentLength}
	if etag := strings.Trim(r.Header.Get("ETag"), `"`); etag != "" {
		sum, err := hex.DecodeString(etag)
		if err != nil || len(sum) != md5.Size {
			fail(w, http.StatusUnprocessableEntity, "")
			return
		}
		opt.MD5 = sum
	}
	if rq.q.Get("multipart-manifest") == "put" {
		h.putSLO(rq, opt)
		return
	}
	if m := r.Header.Get("X-Object-Manifest"); m != "" {
		m, _ = url.PathUnescape(m)
		if c, _, ok := strings.Cut(m, "/"); !ok || c == "" {
			fail(w, http.StatusBadRequest, "X-Object-Manifest must be in the format container/prefix")
			return
		}
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		opt.Manifest, opt.MD5, opt.Size = m, nil, -1
	}
	o, err := h.store.Put(ctx, rq.account, rq.container, rq.object, r.Body, opt)
	if err != nil {
		storeFail(w, err)
		return
	}
	w.Header().Set("ETag", o.ETag)
	w.Header().Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusCreated)
}

// putSLO stores a static large object manifest after checking its segments.
func (h *handler) putSLO(rq *request, opt objectstore.PutOptions) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	var segs []struct {
		Path      string  `json:"path"`
		ETag      *string `json:"etag"`
		SizeBytes *int64  `json:"size_bytes"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&segs); err != nil || len(segs) == 0 || len(segs) > 1000 {
		fail(w, http.StatusBadRequest, "Manifest must be valid JSON: a list of 1 to 1000 segments.\n")
		return
	}
	var problems []string
	var out []objectstore.Segment
	h5 := md5.New()
	for _, s := range segs {
		p := strings.TrimPrefix(s.Path, "/")
		c, o, ok := strings.Cut(p, "/")
		if !ok || c == "" || o == "" {
			problems = append(problems, s.Path+", Invalid path")
			continue
		}
		seg, _, err := h.store.Get(ctx, rq.account, c, o, false)
		if err != nil {
			problems = append(problems, s.Path+", 404 Not Found")
			continue
		}
		if s.ETag != nil && *s.ETag != "" && strings.Trim(*s.ETag, `"`) != seg.ETag {
			problems = append(problems, s.Path+", Etag Mismatch")
			continue
		}
		if s.SizeBytes != nil && *s.SizeBytes != seg.Size {
			problems = append(problems, s.Path+", Size Mismatch")
			continue
		}
		out = append(out, objectstore.Segment{Path: "/" + p, ETag: seg.ETag, Size: seg.Size})
		h5.Write([]byte(seg.ETag))
	}
	if len(problems) > 0 {
		fail(w, http.StatusBadRequest, "Errors:\n"+strings.Join(problems, "\n")+"\n")
		return
	}
	etag := hex.EncodeToString(h5.Sum(nil))
	if opt.MD5 != nil && hex.EncodeToString(opt.MD5) != etag {
		fail(w, http.StatusUnprocessableEntity, "")
		return
	}
	opt.MD5, opt.Size, opt.SLO = nil, -1, out
	if _, err := h.store.Put(ctx, rq.account, rq.container, rq.object, nil, opt); err != nil {
		storeFail(w, err)
		return
	}
	w.Header().Set("ETag", `"`+etag+`"`)
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusCreated)
}

func (h *handler) copy(rq *request, sc, so, dc, do string) {
	w, r := rq.w, rq.r
	var meta, hdrs map[string]string
	if r.Header.Get("X-Fresh-Metadata") == "true" {
		meta, hdrs = objectMeta(r)
		if meta == nil {
			meta = map[string]string{}
		}
	} else if m, hd := objectMeta(r); m != nil || hd != nil {
		// New metadata is merged over the source's.
		src, err := h.store.Stat(r.Context(), rq.account, sc, so)
		if err != nil {
			storeFail(w, err)
			return
		}
		meta = map[string]string{}
		for k, v := range src.Meta {
			meta[k] = v
		}
		for k, v := range m {
			meta[k] = v
		}
		hdrs = src.Headers
		if hd != nil {
			hdrs = hd
		}
	}
	o, err := h.store.Copy(r.Context(), rq.account, sc, so, dc, do, meta, hdrs, r.Header.Get("Content-Type"))
	if err != nil {
		storeFail(w, err)
		return
	}
	w.Header().Set("ETag", o.ETag)
	w.Header().Set("X-Copied-From", sc+"/"+url.PathEscape(so))
	w.Header().Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusCreated)
}

func (h *handler) postObject(rq *request) {
	meta, hdrs := objectMeta(rq.r)
	ct := ""
	if rq.r.Header.Get("Content-Type") != "" {
		ct = rq.r.Header.Get("Content-Type")
	}
	if _, err := h.store.SetObjectMeta(rq.r.Context(), rq.account, rq.container, rq.object, meta, hdrs, ct); err != nil {
		storeFail(rq.w, err)
		return
	}
	rq.w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	rq.w.WriteHeader(http.StatusAccepted)
}

func (h *handler) deleteObject(rq *request) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	if rq.q.Get("multipart-manifest") == "delete" {
		o, err := h.store.Stat(ctx, rq.account, rq.container, rq.object)
		if err != nil {
			storeFail(w, err)
			return
		}
		deleted, notFound := 0, 0
		for _, s := range o.SLO {
			c, n, _ := strings.Cut(strings.TrimPrefix(s.Path, "/"), "/")
			if _, err := h.store.Delete(ctx, rq.account, c, n); err != nil {
				notFound++
			} else {
				deleted++
			}
		}
		if _, err := h.store.Delete(ctx, rq.account, rq.container, rq.object); err != nil {
			notFound++
		} else {
			deleted++
		}
		if o.SLO == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if strings.Contains(r.Header.Get("Accept"), "json") {
			writeJSON(w, r, http.StatusOK, map[string]any{"Number Deleted": deleted, "Number Not Found": notFound, "Response Status": "200 OK", "Response Body": "", "Errors": []any{}})
			return
		}
		plain(w, fmt.Sprintf("Number Deleted: %d\nNumber Not Found: %d\nResponse Body: \nResponse Status: 200 OK\nErrors: \n", deleted, notFound))
		return
	}
	if _, err := h.store.Delete(ctx, rq.account, rq.container, rq.object); err != nil {
		storeFail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) getObject(rq *request) {
	w, r := rq.w, rq.r
	ctx := r.Context()
	manifestGet := rq.q.Get("multipart-manifest") == "get"
	var o objectstore.Object
	var rd *objectstore.Reader
	var err error
	if manifestGet {
		o, err = h.store.Stat(ctx, rq.account, rq.container, rq.object)
	} else {
		o, rd, err = h.store.Get(ctx, rq.account, rq.container, rq.object, r.Method == http.MethodGet)
	}
	if err != nil {
		storeFail(w, err)
		return
	}
	if rd != nil {
		defer rd.Close()
	}
	hd := w.Header()
	if o.ContentType == "" {
		o.ContentType = "application/octet-stream" // an object PUT through S3 without one
	}
	hd.Set("Content-Type", o.ContentType)
	hd.Set("X-Timestamp", timestamp(o.Modified))
	hd.Set("Accept-Ranges", "bytes")
	setMeta(w, "Object", o.Meta)
	for k, v := range o.Headers {
		hd.Set(k, v)
	}
	etag := o.ETag
	switch {
	case o.SLO != nil:
		hd.Set("X-Static-Large-Object", "True")
		etag = `"` + etag + `"`
	case o.Manifest != "":
		hd.Set("X-Object-Manifest", o.Manifest)
		etag = `"` + etag + `"`
	case strings.Contains(etag, "-"):
		// A completed S3 multipart upload: its ETag is not its content's
		// MD5, so Swift clients must not check it (Swift's S3 layer makes
		// such an object a static large object).
		hd.Set("X-Static-Large-Object", "True")
		etag = `"` + etag + `"`
	}
	if rq.q.Get("temp_url_sig") != "" {
		for k := range hd {
			if strings.HasPrefix(k, "X-Object-Meta-") {
				delete(hd, k)
			}
		}
		if _, ok := rq.q["inline"]; !ok && r.Method == http.MethodGet {
			name := rq.q.Get("filename")
			if name == "" {
				name = path.Base(rq.object)
			}
			hd.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		}
	}
	if manifestGet && o.SLO != nil {
		out := make([]map[string]any, 0, len(o.SLO))
		for _, s := range o.SLO {
			out = append(out, map[string]any{"name": s.Path, "hash": s.ETag, "bytes": s.Size, "content_type": "application/octet-stream", "last_modified": listTime(o.Modified)})
		}
		hd.Set("ETag", md5hex(""))
		writeJSON(w, r, http.StatusOK, out)
		return
	}
	hd.Set("ETag", etag)
	if manifestGet {
		// A plain object or DLO manifest: its own (empty for a DLO) body.
		o, rd, err = h.store.Get(ctx, rq.account, rq.container, rq.object, r.Method == http.MethodGet)
		if err != nil {
			storeFail(w, err)
			return
		}
		if rd != nil {
			defer rd.Close()
		}
	}
	if !checkConditions(w, r, etag, o.Modified) {
		return
	}
	hd.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	if r.Method == http.MethodHead {
		hd.Set("Content-Length", strconv.FormatInt(o.Size, 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	objectstore.Serve(w, r, rd)
}

// checkConditions answers If-Match, If-Unmodified-Since (412), If-None-Match
// and If-Modified-Since (304); false when it answered. ETags compare
// quoted or not.
func checkConditions(w http.ResponseWriter, r *http.Request, etag string, mod time.Time) bool {
	q := `"` + strings.Trim(etag, `"`) + `"`
	has := func(list string) bool {
		for _, e := range strings.Split(list, ",") {
			e = strings.TrimSpace(e)
			if e == "*" || e == q || `"`+e+`"` == q {
				return true
			}
		}
		return false
	}
	mod = mod.Truncate(time.Second)
	im := r.Header.Get("If-Match")
	if im != "" && !has(im) {
		fail(w, http.StatusPreconditionFailed, "")
		return false
	}
	if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && im == "" && mod.After(t) {
		fail(w, http.StatusPreconditionFailed, "")
		return false
	}
	inm := r.Header.Get("If-None-Match")
	notModified := inm != "" && has(inm)
	if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && inm == "" && !mod.After(t) {
		notModified = true
	}
	if notModified {
		w.WriteHeader(http.StatusNotModified)
		return false
	}
	return true
}
