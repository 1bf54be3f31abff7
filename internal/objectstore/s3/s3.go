// Package s3 is the S3 API face of the object store: buckets are the
// containers of the project an EC2 credential (Keystone's `openstack ec2
// credentials create`) acts for, so each project has its own bucket
// namespace, shared with its Swift account. Requests authenticate with AWS
// Signature Version 4, in the Authorization header or a presigned URL.
package s3

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// Config is what the S3 API needs.
type Config struct {
	// Store holds the buckets and objects (shared with the Swift face).
	Store *objectstore.Store
	// Credentials resolves access keys (Keystone's EC2 credentials).
	Credentials auth.EC2Credentials
	// VirtualHostSuffix, when set (e.g. "s3.example.com"), also serves
	// virtual-hosted-style requests: Host "b.s3.example.com" names bucket b.
	VirtualHostSuffix string
	// Region is reported by GetBucketLocation; empty: us-east-1. Requests
	// signed for any region are accepted.
	Region string
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

type handler struct {
	store  *objectstore.Store
	creds  auth.EC2Credentials
	vhost  string
	region string
	now    func() time.Time
}

// Handler serves the S3 API at the root of its own listener.
func Handler(cfg Config) http.Handler {
	h := &handler{store: cfg.Store, creds: cfg.Credentials, vhost: strings.ToLower(strings.TrimPrefix(cfg.VirtualHostSuffix, ".")), region: cfg.Region, now: cfg.Now}
	if h.region == "" {
		h.region = "us-east-1"
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// AccountOf is the store account of a project: Swift's AUTH_<project>.
func AccountOf(projectID string) string { return "AUTH_" + projectID }

// request is one S3 call in flight.
type request struct {
	w         http.ResponseWriter
	r         *http.Request
	q         url.Values
	id        string // x-amz-request-id
	account   string
	owner     string
	bucket    string
	key       string
	body      io.Reader
	size      int64
	writeable bool
}

const xmlns = "http://s3.amazonaws.com/doc/2006-03-01/"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var b [8]byte
	rand.Read(b[:])
	rq := &request{w: w, r: r, q: r.URL.Query(), id: strings.ToUpper(hex.EncodeToString(b[:]))}
	w.Header().Set("X-Amz-Request-Id", rq.id)
	w.Header().Set("Server", "Strata")
	rq.bucket, rq.key = h.bucketKey(r)

	a, aerr := h.verify(r)
	if aerr != nil {
		rq.fail(aerr.status, aerr.code, aerr.message)
		return
	}
	if a.id.ProjectID == "" {
		rq.fail(http.StatusForbidden, "AccessDenied", "The credential has no project.")
		return
	}
	rq.account, rq.owner, rq.body, rq.size = AccountOf(a.id.ProjectID), a.id.ProjectID, a.body, a.size
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	if !a.id.HasRole("reader") || !read && !a.id.HasRole("member") {
		rq.fail(http.StatusForbidden, "AccessDenied", "Access Denied")
		return
	}
	h.route(rq)
}

// bucketKey splits a request into bucket and key, virtual-hosted or
// path-style.
func (h *handler) bucketKey(r *http.Request) (string, string) {
	p := r.URL.Path
	if h.vhost != "" {
		host := strings.ToLower(r.Host)
		if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.Contains(host[i:], "]") {
			host = host[:i]
		}
		if b, ok := strings.CutSuffix(host, "."+h.vhost); ok && b != "" {
			return b, strings.TrimPrefix(p, "/")
		}
	}
	b, k, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	return b, k
}

func (h *handler) route(rq *request) {
	r, q := rq.r, rq.q
	delete(q, "x-id") // the newer SDKs' operation hint
	has := func(k string) bool { _, ok := q[k]; return ok }
	if rq.bucket == "" {
		if r.Method == http.MethodGet {
			h.listBuckets(rq)
			return
		}
		rq.fail(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		return
	}
	if rq.key == "" {
		switch {
		case r.Method == http.MethodPut && len(q) == 0:
			h.createBucket(rq)
		case r.Method == http.MethodDelete && len(q) == 0:
			h.deleteBucket(rq)
		case r.Method == http.MethodHead:
			h.headBucket(rq)
		case r.Method == http.MethodGet && has("location"):
			if h.bucketExists(rq) {
				rq.xml(http.StatusOK, struct {
					XMLName xml.Name `xml:"LocationConstraint"`
					NS      string   `xml:"xmlns,attr"`
				}{NS: xmlns})
			}
		case r.Method == http.MethodGet && has("versioning"):
			if h.bucketExists(rq) {
				rq.xml(http.StatusOK, struct {
					XMLName xml.Name `xml:"VersioningConfiguration"`
					NS      string   `xml:"xmlns,attr"`
				}{NS: xmlns})
			}
		case r.Method == http.MethodGet && has("uploads"):
			h.listUploads(rq)
		case r.Method == http.MethodGet && q.Get("list-type") == "2":
			h.listObjects(rq, true)
		case r.Method == http.MethodGet && (len(q) == 0 || has("prefix") || has("delimiter") || has("marker") || has("max-keys") || has("encoding-type")):
			h.listObjects(rq, false)
		case r.Method == http.MethodPost && has("delete"):
			h.deleteObjects(rq)
		default:
			rq.fail(http.StatusNotImplemented, "NotImplemented", "A header or query you provided implies functionality that is not implemented.")
		}
		return
	}
	switch r.Method {
	case http.MethodPut:
		switch {
		case has("uploadId") && r.Header.Get("X-Amz-Copy-Source") != "":
			rq.fail(http.StatusNotImplemented, "NotImplemented", "UploadPartCopy is not implemented.")
		case has("uploadId"):
			h.uploadPart(rq)
		case r.Header.Get("X-Amz-Copy-Source") != "":
			h.copyObject(rq)
		case len(q) == 0:
			h.putObject(rq)
		default:
			rq.fail(http.StatusNotImplemented, "NotImplemented", "A header or query you provided implies functionality that is not implemented.")
		}
	case http.MethodGet, http.MethodHead:
		if has("uploadId") && r.Method == http.MethodGet {
			h.listParts(rq)
			return
		}
		h.getObject(rq)
	case http.MethodDelete:
		if has("uploadId") {
			h.abortUpload(rq)
			return
		}
		h.deleteObject(rq)
	case http.MethodPost:
		switch {
		case has("uploads"):
			h.createUpload(rq)
		case has("uploadId"):
			h.completeUpload(rq)
		default:
			rq.fail(http.StatusNotImplemented, "NotImplemented", "POST is not implemented for this resource.")
		}
	default:
		rq.fail(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
}

// Error is S3's error body.
type Error struct {
	XMLName   xml.Name `xml:"Error"`
	Code      string
	Message   string
	Resource  string `xml:",omitempty"`
	RequestID string `xml:"RequestId"`
}

func (rq *request) fail(status int, code, message string) {
	res := rq.r.URL.Path
	rq.xml(status, Error{Code: code, Message: message, Resource: res, RequestID: rq.id})
}

func (rq *request) xml(status int, v any) {
	out, err := xml.Marshal(v)
	if err != nil {
		status, out = http.StatusInternalServerError, []byte("<Error><Code>InternalError</Code></Error>")
	}
	rq.w.Header().Set("Content-Type", "application/xml")
	rq.w.Header().Set("Content-Length", strconv.Itoa(len(xml.Header)+len(out)))
	rq.w.WriteHeader(status)
	if rq.r.Method != http.MethodHead {
		io.WriteString(rq.w, xml.Header)
		rq.w.Write(out)
	}
}

// storeError answers a store error the way S3 does.
func (rq *request) storeError(err error) {
	var ae *authError
	switch {
	case errors.As(err, &ae):
		rq.fail(ae.status, ae.code, ae.message)
	case errors.Is(err, objectstore.ErrNoContainer):
		rq.fail(http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist")
	case errors.Is(err, objectstore.ErrNoObject):
		rq.fail(http.StatusNotFound, "NoSuchKey", "The specified key does not exist.")
	case errors.Is(err, objectstore.ErrNotEmpty):
		rq.fail(http.StatusConflict, "BucketNotEmpty", "The bucket you tried to delete is not empty")
	case errors.Is(err, objectstore.ErrBadDigest):
		rq.fail(http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
	case errors.Is(err, objectstore.ErrNoUpload):
		rq.fail(http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
	case errors.Is(err, objectstore.ErrInvalidPart):
		rq.fail(http.StatusBadRequest, "InvalidPart", "One or more of the specified parts could not be found.")
	case errors.Is(err, objectstore.ErrPartOrder):
		rq.fail(http.StatusBadRequest, "InvalidPartOrder", "The list of parts was not in ascending order.")
	case errors.Is(err, objectstore.ErrEntityTooSmall):
		rq.fail(http.StatusBadRequest, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size.")
	case errors.Is(err, objectstore.ErrEntityTooBig):
		rq.fail(http.StatusBadRequest, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed object size.")
	case errors.Is(err, objectstore.ErrIncomplete), errors.Is(err, io.ErrUnexpectedEOF):
		rq.fail(http.StatusBadRequest, "IncompleteBody", "You did not provide the number of bytes specified by the Content-Length HTTP header.")
	case errors.Is(err, objectstore.ErrInvalidName):
		rq.fail(http.StatusBadRequest, "InvalidArgument", "Invalid name.")
	case errors.Is(err, objectstore.ErrSegment):
		rq.fail(http.StatusConflict, "InvalidObjectState", "A segment of this large object is missing.")
	default:
		rq.fail(http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
	}
}

func (h *handler) bucketExists(rq *request) bool {
	if _, err := h.store.Container(rq.r.Context(), rq.account, rq.bucket); err != nil {
		rq.storeError(err)
		return false
	}
	return true
}

func s3Time(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

type owner struct {
	ID          string
	DisplayName string
}

func (h *handler) listBuckets(rq *request) {
	cs, _, err := h.store.ListContainers(rq.r.Context(), rq.account, objectstore.ListOptions{Limit: 1 << 30})
	if err != nil {
		rq.storeError(err)
		return
	}
	type bucket struct {
		Name         string
		CreationDate string
	}
	res := struct {
		XMLName xml.Name `xml:"ListAllMyBucketsResult"`
		NS      string   `xml:"xmlns,attr"`
		Owner   owner
		Buckets []bucket `xml:"Buckets>Bucket"`
	}{NS: xmlns, Owner: owner{rq.owner, rq.owner}}
	for _, c := range cs {
		res.Buckets = append(res.Buckets, bucket{c.Name, s3Time(c.Created)})
	}
	rq.xml(http.StatusOK, res)
}

// validBucket is S3's bucket naming rule.
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	first, last := b[0], b[len(b)-1]
	return first != '-' && first != '.' && last != '-' && last != '.' && !strings.Contains(b, "..")
}

func (h *handler) createBucket(rq *request) {
	if !validBucket(rq.bucket) {
		rq.fail(http.StatusBadRequest, "InvalidBucketName", "The specified bucket is not valid.")
		return
	}
	io.Copy(io.Discard, io.LimitReader(rq.body, 1<<20)) // CreateBucketConfiguration
	created, err := h.store.CreateContainer(rq.r.Context(), rq.account, rq.bucket, nil)
	if err != nil {
		rq.storeError(err)
		return
	}
	if !created {
		rq.fail(http.StatusConflict, "BucketAlreadyOwnedByYou", "Your previous request to create the named bucket succeeded and you already own it.")
		return
	}
	rq.w.Header().Set("Location", "/"+rq.bucket)
	rq.w.WriteHeader(http.StatusOK)
}

func (h *handler) deleteBucket(rq *request) {
	if err := h.store.DeleteContainer(rq.r.Context(), rq.account, rq.bucket); err != nil {
		rq.storeError(err)
		return
	}
	rq.w.WriteHeader(http.StatusNoContent)
}

func (h *handler) headBucket(rq *request) {
	if h.bucketExists(rq) {
		rq.w.Header().Set("X-Amz-Bucket-Region", h.region)
		rq.w.WriteHeader(http.StatusOK)
	}
}

type listEntry struct {
	Key          string
	LastModified string
	ETag         string
	Size         int64
	StorageClass string
	Owner        *owner `xml:",omitempty"`
}

type commonPrefix struct {
	Prefix string
}

func (h *handler) listObjects(rq *request, v2 bool) {
	q := rq.q
	maxKeys := 1000
	if s := q.Get("max-keys"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			rq.fail(http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer.")
			return
		}
		maxKeys = min(n, 1000)
	}
	urlEnc := q.Get("encoding-type") == "url"
	if e := q.Get("encoding-type"); e != "" && e != "url" {
		rq.fail(http.StatusBadRequest, "InvalidArgument", "Invalid Encoding Method specified in Request")
		return
	}
	enc := func(s string) string {
		if urlEnc {
			return url.QueryEscape(s)
		}
		return s
	}
	opt := objectstore.ListOptions{Prefix: q.Get("prefix"), Delimiter: q.Get("delimiter"), Limit: maxKeys}
	var token string
	if v2 {
		opt.Marker = q.Get("start-after")
		if token = q.Get("continuation-token"); token != "" {
			m, err := base64.RawURLEncoding.DecodeString(token)
			if err != nil {
				rq.fail(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect")
				return
			}
			opt.Marker = string(m)
		}
	} else {
		opt.Marker = q.Get("marker")
	}
	var es []objectstore.Entry
	truncated := false
	if maxKeys > 0 {
		var err error
		es, truncated, err = h.store.List(rq.r.Context(), rq.account, rq.bucket, opt)
		if err != nil {
			rq.storeError(err)
			return
		}
	} else if !h.bucketExists(rq) {
		return
	}
	type result struct {
		XMLName               xml.Name `xml:"ListBucketResult"`
		NS                    string   `xml:"xmlns,attr"`
		Name                  string
		Prefix                string
		Marker                *string `xml:",omitempty"`
		NextMarker            string  `xml:",omitempty"`
		ContinuationToken     string  `xml:",omitempty"`
		NextContinuationToken string  `xml:",omitempty"`
		StartAfter            string  `xml:",omitempty"`
		KeyCount              *int    `xml:",omitempty"`
		MaxKeys               int
		Delimiter             string `xml:",omitempty"`
		EncodingType          string `xml:",omitempty"`
		IsTruncated           bool
		Contents              []listEntry
		CommonPrefixes        []commonPrefix
	}
	res := result{NS: xmlns, Name: rq.bucket, Prefix: enc(opt.Prefix), MaxKeys: maxKeys, Delimiter: enc(opt.Delimiter), IsTruncated: truncated}
	if urlEnc {
		res.EncodingType = "url"
	}
	for _, e := range es {
		if e.Subdir != "" {
			res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{enc(e.Subdir)})
			continue
		}
		le := listEntry{Key: enc(e.Name), LastModified: s3Time(e.Modified), ETag: `"` + e.ETag + `"`, Size: e.Size, StorageClass: "STANDARD"}
		if !v2 {
			le.Owner = &owner{rq.owner, rq.owner}
		}
		res.Contents = append(res.Contents, le)
	}
	last := ""
	if len(es) > 0 {
		last = es[len(es)-1].Name
		if es[len(es)-1].Subdir != "" {
			last = es[len(es)-1].Subdir
		}
	}
	if v2 {
		n := len(es)
		res.KeyCount = &n
		res.ContinuationToken = token
		res.StartAfter = enc(q.Get("start-after"))
		if truncated {
			res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
		}
	} else {
		m := enc(opt.Marker)
		res.Marker = &m
		if truncated {
			res.NextMarker = enc(last)
		}
	}
	rq.xml(http.StatusOK, res)
}

// putOptions reads the headers an object keeps.
func putOptions(r *http.Request) objectstore.PutOptions {
	opt := objectstore.PutOptions{ContentType: r.Header.Get("Content-Type"), Size: -1}
	for k, vs := range r.Header {
		if m, ok := strings.CutPrefix(strings.ToLower(k), "x-amz-meta-"); ok {
			if opt.Meta == nil {
				opt.Meta = map[string]string{}
			}
			opt.Meta[m] = strings.Join(vs, ",")
		}
	}
	for _, k := range []string{"Content-Disposition", "Cache-Control", "Expires", "Content-Language"} {
		if v := r.Header.Get(k); v != "" {
			if opt.Headers == nil {
				opt.Headers = map[string]string{}
			}
			opt.Headers[k] = v
		}
	}
	// aws-chunked is the transfer's encoding, not the content's.
	var ce []string
	for _, e := range strings.Split(r.Header.Get("Content-Encoding"), ",") {
		if e = strings.TrimSpace(e); e != "" && e != "aws-chunked" {
			ce = append(ce, e)
		}
	}
	if len(ce) > 0 {
		if opt.Headers == nil {
			opt.Headers = map[string]string{}
		}
		opt.Headers["Content-Encoding"] = strings.Join(ce, ", ")
	}
	return opt
}

// contentMD5 parses Content-MD5; ok is false after answering a bad one.
func (rq *request) contentMD5() ([]byte, bool) {
	v := rq.r.Header.Get("Content-MD5")
	if v == "" {
		return nil, true
	}
	sum, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(sum) != md5.Size {
		rq.fail(http.StatusBadRequest, "InvalidDigest", "The Content-MD5 you specified was invalid.")
		return nil, false
	}
	return sum, true
}

func (h *handler) putObject(rq *request) {
	sum, ok := rq.contentMD5()
	if !ok {
		return
	}
	opt := putOptions(rq.r)
	opt.MD5, opt.Size = sum, rq.size
	o, err := h.store.Put(rq.r.Context(), rq.account, rq.bucket, rq.key, rq.body, opt)
	if err != nil {
		rq.storeError(err)
		return
	}
	rq.w.Header().Set("ETag", `"`+o.ETag+`"`)
	rq.w.WriteHeader(http.StatusOK)
}

// objectHeaders sets the headers GET and HEAD return.
func objectHeaders(w http.ResponseWriter, o objectstore.Object) {
	hd := w.Header()
	hd.Set("ETag", `"`+o.ETag+`"`)
	hd.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
	ct := o.ContentType
	if ct == "" {
		ct = "binary/octet-stream"
	}
	hd.Set("Content-Type", ct)
	hd.Set("Accept-Ranges", "bytes")
	for k, v := range o.Meta {
		hd.Set("X-Amz-Meta-"+k, v)
	}
	for k, v := range o.Headers {
		hd.Set(k, v)
	}
}

// preconditions answers If-Match, If-Unmodified-Since (412), If-None-Match
// and If-Modified-Since (304) as S3 does; false when it answered.
func (rq *request) preconditions(o objectstore.Object) bool {
	r := rq.r
	etag := `"` + o.ETag + `"`
	match := func(list string) bool {
		for _, e := range strings.Split(list, ",") {
			e = strings.TrimSpace(e)
			if e == "*" || e == etag || strings.TrimPrefix(e, "W/") == etag || `"`+e+`"` == etag {
				return true
			}
		}
		return false
	}
	mod := o.Modified.Truncate(time.Second)
	im := r.Header.Get("If-Match")
	if im != "" && !match(im) {
		rq.fail(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		return false
	}
	if t, err := http.ParseTime(r.Header.Get("If-Unmodified-Since")); err == nil && im == "" && mod.After(t) {
		rq.fail(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		return false
	}
	inm := r.Header.Get("If-None-Match")
	notModified := inm != "" && match(inm)
	if t, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && inm == "" && !mod.After(t) {
		notModified = true
	}
	if notModified {
		hd := rq.w.Header()
		hd.Set("ETag", etag)
		hd.Set("Last-Modified", o.Modified.UTC().Format(http.TimeFormat))
		rq.w.WriteHeader(http.StatusNotModified)
		return false
	}
	return true
}

func (h *handler) getObject(rq *request) {
	r := rq.r
	o, rd, err := h.store.Get(r.Context(), rq.account, rq.bucket, rq.key, r.Method == http.MethodGet)
	if err != nil {
		rq.storeError(err)
		return
	}
	if rd != nil {
		defer rd.Close()
	}
	if !rq.preconditions(o) {
		return
	}
	objectHeaders(rq.w, o)
	for _, p := range [][2]string{{"response-content-type", "Content-Type"}, {"response-content-disposition", "Content-Disposition"}, {"response-cache-control", "Cache-Control"}, {"response-content-encoding", "Content-Encoding"}, {"response-expires", "Expires"}, {"response-content-language", "Content-Language"}} {
		if v := rq.q.Get(p[0]); v != "" {
			rq.w.Header().Set(p[1], v)
		}
	}
	if r.Method == http.MethodHead {
		rq.w.Header().Set("Content-Length", strconv.FormatInt(o.Size, 10))
		rq.w.WriteHeader(http.StatusOK)
		return
	}
	if r.Header.Get("Range") != "" && !validRange(r.Header.Get("Range")) {
		r.Header.Del("Range") // S3 ignores a malformed Range
	}
	objectstore.Serve(rq.w, r, rd)
}

func validRange(s string) bool {
	spec, ok := strings.CutPrefix(s, "bytes=")
	return ok && spec != "" && !strings.Contains(spec, ",")
}

func (h *handler) deleteObject(rq *request) {
	_, err := h.store.Delete(rq.r.Context(), rq.account, rq.bucket, rq.key)
	if err != nil && !errors.Is(err, objectstore.ErrNoObject) {
		rq.storeError(err)
		return
	}
	rq.w.WriteHeader(http.StatusNoContent)
}

func (h *handler) deleteObjects(rq *request) {
	var req struct {
		Quiet   bool
		Objects []struct{ Key string } `xml:"Object"`
	}
	if err := xml.NewDecoder(io.LimitReader(rq.body, 4<<20)).Decode(&req); err != nil || len(req.Objects) > 1000 {
		rq.fail(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
		return
	}
	if !h.bucketExists(rq) {
		return
	}
	type deleted struct{ Key string }
	type delError struct{ Key, Code, Message string }
	res := struct {
		XMLName xml.Name `xml:"DeleteResult"`
		NS      string   `xml:"xmlns,attr"`
		Deleted []deleted
		Error   []delError
	}{NS: xmlns}
	for _, o := range req.Objects {
		_, err := h.store.Delete(rq.r.Context(), rq.account, rq.bucket, o.Key)
		if err != nil && !errors.Is(err, objectstore.ErrNoObject) {
			res.Error = append(res.Error, delError{o.Key, "InternalError", err.Error()})
			continue
		}
		if !req.Quiet {
			res.Deleted = append(res.Deleted, deleted{o.Key})
		}
	}
	rq.xml(http.StatusOK, res)
}

func (h *handler) copyObject(rq *request) {
	src, err := url.PathUnescape(rq.r.Header.Get("X-Amz-Copy-Source"))
	src, _, _ = strings.Cut(src, "?versionId=")
	sb, sk, ok := strings.Cut(strings.TrimPrefix(src, "/"), "/")
	if err != nil || !ok || sb == "" || sk == "" {
		rq.fail(http.StatusBadRequest, "InvalidArgument", "Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
		return
	}
	var meta, headers map[string]string
	ctype := ""
	switch rq.r.Header.Get("X-Amz-Metadata-Directive") {
	case "", "COPY":
		if sb == rq.bucket && sk == rq.key {
			rq.fail(http.StatusBadRequest, "InvalidRequest", "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata.")
			return
		}
	case "REPLACE":
		opt := putOptions(rq.r)
		meta, headers, ctype = opt.Meta, opt.Headers, opt.ContentType
		if meta == nil {
			meta = map[string]string{}
		}
		if headers == nil {
			headers = map[string]string{}
		}
	default:
		rq.fail(http.StatusBadRequest, "InvalidArgument", "Unknown metadata directive.")
		return
	}
	so, err := h.store.Stat(rq.r.Context(), rq.account, sb, sk)
	if err != nil {
		rq.storeError(err)
		return
	}
	if v := rq.r.Header.Get("X-Amz-Copy-Source-If-Match"); v != "" && strings.Trim(v, `"`) != so.ETag {
		rq.fail(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		return
	}
	if v := rq.r.Header.Get("X-Amz-Copy-Source-If-None-Match"); v != "" && strings.Trim(v, `"`) == so.ETag {
		rq.fail(http.StatusPreconditionFailed, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
		return
	}
	o, err := h.store.Copy(rq.r.Context(), rq.account, sb, sk, rq.bucket, rq.key, meta, headers, ctype)
	if err != nil {
		rq.storeError(err)
		return
	}
	rq.xml(http.StatusOK, struct {
		XMLName      xml.Name `xml:"CopyObjectResult"`
		NS           string   `xml:"xmlns,attr"`
		LastModified string
		ETag         string
	}{NS: xmlns, LastModified: s3Time(o.Modified), ETag: `"` + o.ETag + `"`})
}

func (h *handler) createUpload(rq *request) {
	u, err := h.store.CreateUpload(rq.r.Context(), rq.account, rq.bucket, rq.key, putOptions(rq.r))
	if err != nil {
		rq.storeError(err)
		return
	}
	rq.xml(http.StatusOK, struct {
		XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Bucket   string
		Key      string
		UploadID string `xml:"UploadId"`
	}{NS: xmlns, Bucket: rq.bucket, Key: rq.key, UploadID: u.ID})
}

// upload returns the caller's upload named by ?uploadId, or answers.
func (h *handler) upload(rq *request) (objectstore.Upload, bool) {
	u, err := h.store.GetUpload(rq.r.Context(), rq.q.Get("uploadId"))
	if err == nil && (u.Account != rq.account || u.Container != rq.bucket || u.Name != rq.key) {
		err = objectstore.ErrNoUpload
	}
	if err != nil {
		rq.storeError(err)
		return u, false
	}
	return u, true
}

func (h *handler) uploadPart(rq *request) {
	n, err := strconv.Atoi(rq.q.Get("partNumber"))
	if err != nil || n < 1 || n > objectstore.MaxParts {
		rq.fail(http.StatusBadRequest, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
		return
	}
	sum, ok := rq.contentMD5()
	if !ok {
		return
	}
	u, ok := h.upload(rq)
	if !ok {
		return
	}
	p, err := h.store.PutPart(rq.r.Context(), u.ID, n, rq.body, sum, rq.size)
	if err != nil {
		rq.storeError(err)
		return
	}
	rq.w.Header().Set("ETag", `"`+p.ETag+`"`)
	rq.w.WriteHeader(http.StatusOK)
}

func (h *handler) completeUpload(rq *request) {
	u, ok := h.upload(rq)
	if !ok {
		return
	}
	var req struct {
		Parts []struct {
			PartNumber int
			ETag       string
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(io.LimitReader(rq.body, 4<<20)).Decode(&req); err != nil {
		rq.fail(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.")
		return
	}
	parts := make([]objectstore.CompletePart, len(req.Parts))
	for i, p := range req.Parts {
		parts[i] = objectstore.CompletePart{Number: p.PartNumber, ETag: p.ETag}
	}
	o, err := h.store.CompleteUpload(rq.r.Context(), u.ID, parts)
	if err != nil {
		rq.storeError(err)
		return
	}
	rq.xml(http.StatusOK, struct {
		XMLName  xml.Name `xml:"CompleteMultipartUploadResult"`
		NS       string   `xml:"xmlns,attr"`
		Location string
		Bucket   string
		Key      string
		ETag     string
	}{NS: xmlns, Location: "/" + rq.bucket + "/" + rq.key, Bucket: rq.bucket, Key: rq.key, ETag: `"` + o.ETag + `"`})
}

func (h *handler) abortUpload(rq *request) {
	u, ok := h.upload(rq)
	if !ok {
		return
	}
	if err := h.store.AbortUpload(rq.r.Context(), u.ID); err != nil {
		rq.storeError(err)
		return
	}
	rq.w.WriteHeader(http.StatusNoContent)
}

func (h *handler) listParts(rq *request) {
	u, ok := h.upload(rq)
	if !ok {
		return
	}
	_, ps, err := h.store.ListParts(rq.r.Context(), u.ID)
	if err != nil {
		rq.storeError(err)
		return
	}
	marker, _ := strconv.Atoi(rq.q.Get("part-number-marker"))
	maxParts := 1000
	if n, err := strconv.Atoi(rq.q.Get("max-parts")); err == nil && n >= 0 && n < maxParts {
		maxParts = n
	}
	type part struct {
		PartNumber   int
		LastModified string
		ETag         string
		Size         int64
	}
	res := struct {
		XMLName              xml.Name `xml:"ListPartsResult"`
		NS                   string   `xml:"xmlns,attr"`
		Bucket               string
		Key                  string
		UploadID             string `xml:"UploadId"`
		StorageClass         string
		PartNumberMarker     int
		NextPartNumberMarker int
		MaxParts             int
		IsTruncated          bool
		Parts                []part `xml:"Part"`
	}{NS: xmlns, Bucket: rq.bucket, Key: rq.key, UploadID: u.ID, StorageClass: "STANDARD", PartNumberMarker: marker, MaxParts: maxParts}
	for _, p := range ps {
		if p.Number <= marker {
			continue
		}
		if len(res.Parts) == maxParts {
			res.IsTruncated = true
			break
		}
		res.Parts = append(res.Parts, part{p.Number, s3Time(p.Modified), `"` + p.ETag + `"`, p.Size})
		res.NextPartNumberMarker = p.Number
	}
	rq.xml(http.StatusOK, res)
}

func (h *handler) listUploads(rq *request) {
	us, err := h.store.ListUploads(rq.r.Context(), rq.account, rq.bucket)
	if err != nil {
		rq.storeError(err)
		return
	}
	if !h.bucketExists(rq) {
		return
	}
	type upload struct {
		Key          string
		UploadID     string `xml:"UploadId"`
		Initiated    string
		StorageClass string
	}
	res := struct {
		XMLName     xml.Name `xml:"ListMultipartUploadsResult"`
		NS          string   `xml:"xmlns,attr"`
		Bucket      string
		Prefix      string
		MaxUploads  int
		IsTruncated bool
		Uploads     []upload `xml:"Upload"`
	}{NS: xmlns, Bucket: rq.bucket, Prefix: rq.q.Get("prefix"), MaxUploads: 1000}
	for _, u := range us {
		if strings.HasPrefix(u.Name, res.Prefix) {
			res.Uploads = append(res.Uploads, upload{u.Name, u.ID, s3Time(u.Created), "STANDARD"})
		}
	}
	rq.xml(http.StatusOK, res)
}
