package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

type creds map[string]struct {
	secret string
	id     auth.Identity
}

func (f creds) EC2Credential(ctx context.Context, access string) (string, auth.Identity, error) {
	c, ok := f[access]
	if !ok {
		return "", auth.Identity{}, auth.ErrUnauthorized
	}
	return c.secret, c.id, nil
}

var testCreds = creds{
	"AKALPHA":              {"alpha-secret", auth.Identity{ProjectID: "alpha", Roles: []string{"member"}}},
	"AKBETA":               {"beta-secret", auth.Identity{ProjectID: "beta", Roles: []string{"member"}}},
	"AKREAD":               {"read-secret", auth.Identity{ProjectID: "alpha", Roles: []string{"reader"}}},
	"AKIAIOSFODNN7EXAMPLE": {"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", auth.Identity{ProjectID: "example", Roles: []string{"member"}}},
}

type env struct {
	t     *testing.T
	h     http.Handler
	store *objectstore.Store
	now   time.Time
}

func newEnv(t *testing.T, now time.Time) *env {
	st, err := objectstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &env{t: t, store: st, now: now}
	e.h = Handler(Config{Store: st, Credentials: testCreds, Now: func() time.Time { return e.now }, VirtualHostSuffix: "s3.example.test"})
	return e
}

// do sends a request signed by access (unsigned when empty).
func (e *env) do(access, method, target string, body []byte, hdr map[string]string) *httptest.ResponseRecorder {
	e.t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:9000"+target, bytes.NewReader(body))
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	if access != "" {
		sum := sha256.Sum256(body)
		Sign(r, access, testCreds[access].secret, "us-east-1", hex.EncodeToString(sum[:]), e.now)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	return w
}

func (e *env) want(w *httptest.ResponseRecorder, status int, code string) {
	e.t.Helper()
	if w.Code != status || code != "" && !strings.Contains(w.Body.String(), "<Code>"+code+"</Code>") {
		e.t.Fatalf("got %d %s, want %d %s", w.Code, w.Body.String(), status, code)
	}
}

var t0 = time.Date(2026, 11, 26, 9, 1, 49, 0, time.UTC)

// TestBotocoreVectors checks signatures made by botocore (python3-botocore,
// an independent SigV4 implementation) for secret "alpha-secret".
func TestBotocoreVectors(t *testing.T) {
	e := newEnv(t, t0.Add(3*time.Minute))
	e.store.CreateContainer(context.Background(), "AUTH_alpha", "bkt", nil)
	e.store.Put(context.Background(), "AUTH_alpha", "bkt", "test.txt", strings.NewReader("0123456789abcdef"), objectstore.PutOptions{Size: -1})

	r := httptest.NewRequest("GET", "http://127.0.0.1:9000/bkt/test.txt", nil)
	r.Header.Set("Range", "bytes=0-9")
	r.Header.Set("X-Amz-Date", "20261126T090149Z")
	r.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKALPHA/20261126/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=c572926a814df2bb0f52a5d450823a36ea99f219ede6c45af304009e8c9493a7")
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusPartialContent || w.Body.String() != "0123456789" {
		t.Fatalf("header auth: %d %s", w.Code, w.Body)
	}

	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:9000/bkt/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKALPHA%2F20261126%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261126T090149Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=557d7bd8eecaffd861636703e0e9cc392cea525aa4c0750f633596a607f2c663", nil))
	if w.Code != http.StatusOK || w.Body.String() != "0123456789abcdef" {
		t.Fatalf("presigned: %d %s", w.Code, w.Body)
	}
	// Expired an hour later.
	e.now = t0.Add(61 * time.Minute)
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest("GET", "http://127.0.0.1:9000/bkt/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKALPHA%2F20261126%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261126T090149Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=557d7bd8eecaffd861636703e0e9cc392cea525aa4c0750f633596a607f2c663", nil))
	e.want(w, 403, "AccessDenied")
	e.now = t0

	// A key with characters that need encoding, a query, a signed payload,
	// region eu-west-1.
	body := []byte("hello world")
	r = httptest.NewRequest("PUT", "http://127.0.0.1:9000/bkt/dir/a%20b%2Bc~%21.txt?x-id=PutObject", bytes.NewReader(body))
	sum := sha256.Sum256(body)
	r.Header.Set("Content-Type", "text/plain")
	r.Header.Set("X-Amz-Meta-Color", "blue")
	r.Header.Set("X-Amz-Date", "20261126T090149Z")
	r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKALPHA/20261126/eu-west-1/s3/aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-meta-color, Signature=9a84988502d5203f01cd8b337dac3939669c2cb051a67c37d720a19a646b4465")
	// x-id is an SDK hint S3 ignores: a plain PutObject.
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("put: %d %s", w.Code, w.Body)
	}
	o, err := e.store.Stat(context.Background(), "AUTH_alpha", "bkt", "dir/a b+c~!.txt")
	if err != nil || o.Meta["color"] != "blue" || o.ContentType != "text/plain" {
		t.Fatalf("stored %+v %v", o, err)
	}
}

// TestAWSDocChunkedExample is the aws-chunked upload example of the S3
// SigV4 documentation (64 KiB + 1 KiB of 'a').
func TestAWSDocChunkedExample(t *testing.T) {
	e := newEnv(t, time.Date(2013, 5, 24, 0, 0, 0, 0, time.UTC))
	e.store.CreateContainer(context.Background(), "AUTH_example", "examplebucket", nil)
	chunk := func(n int, sig string) string {
		return fmt.Sprintf("%x;chunk-signature=%s\r\n%s\r\n", n, sig, strings.Repeat("a", n))
	}
	body := chunk(65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648") +
		chunk(1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497") +
		"0;chunk-signature=b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n\r\n"
	if len(body) != 66824 {
		t.Fatalf("body %d bytes", len(body))
	}
	send := func(body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PUT", "http://examplebucket.s3.example.test/chunkObject.txt", strings.NewReader(body))
		r.Host = "s3.amazonaws.com"
		r.URL.Path, r.RequestURI = "/examplebucket/chunkObject.txt", "/examplebucket/chunkObject.txt"
		for k, v := range map[string]string{
			"X-Amz-Date": "20130524T000000Z", "X-Amz-Storage-Class": "REDUCED_REDUNDANCY",
			"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "66560", "Content-Length": "66824",
			"X-Amz-Content-Sha256": streamingSigned,
			"Authorization":        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
		} {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		e.h.ServeHTTP(w, r)
		return w
	}
	w := send(body)
	if w.Code != http.StatusOK {
		t.Fatalf("chunked put: %d %s", w.Code, w.Body)
	}
	o, err := e.store.Stat(context.Background(), "AUTH_example", "examplebucket", "chunkObject.txt")
	if err != nil || o.Size != 66560 || o.Headers["Content-Encoding"] != "" {
		t.Fatalf("stored %+v %v", o, err)
	}
	// A tampered chunk fails its signature and stores nothing.
	e.store.Delete(context.Background(), "AUTH_example", "examplebucket", "chunkObject.txt")
	w = send(strings.Replace(body, "aaaa\r\n", "aaab\r\n", 1))
	e.want(w, 403, "SignatureDoesNotMatch")
	if _, err := e.store.Stat(context.Background(), "AUTH_example", "examplebucket", "chunkObject.txt"); err == nil {
		t.Fatal("tampered upload stored")
	}
}

func TestAuthErrors(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("", "GET", "/", nil, nil), 403, "AccessDenied")
	e.want(e.do("AKNOPE", "GET", "/", nil, nil), 403, "InvalidAccessKeyId")

	r := httptest.NewRequest("GET", "http://127.0.0.1:9000/", nil)
	Sign(r, "AKALPHA", "wrong-secret", "us-east-1", emptySHA256, e.now)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 403, "SignatureDoesNotMatch")
	if !strings.HasPrefix(w.Body.String(), "<?xml") || w.Header().Get("Content-Type") != "application/xml" {
		t.Errorf("error body %q", w.Body)
	}

	r = httptest.NewRequest("GET", "http://127.0.0.1:9000/", nil)
	Sign(r, "AKALPHA", "alpha-secret", "us-east-1", emptySHA256, e.now.Add(-16*time.Minute))
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 403, "RequestTimeTooSkewed")

	// A signed header changed after signing.
	r = httptest.NewRequest("GET", "http://127.0.0.1:9000/?prefix=a", nil)
	Sign(r, "AKALPHA", "alpha-secret", "us-east-1", emptySHA256, e.now)
	r.URL.RawQuery = "prefix=b"
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 403, "SignatureDoesNotMatch")

	// Presigned URL from our own Presign, then tampered.
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	e.want(e.do("AKALPHA", "PUT", "/bkt/k", []byte("v"), nil), 200, "")
	u, _ := Presign("GET", "http://127.0.0.1:9000/bkt/k", "AKALPHA", "alpha-secret", "us-east-1", e.now, time.Minute)
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest("GET", u, nil))
	e.want(w, 200, "")
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, httptest.NewRequest("GET", strings.Replace(u, "/bkt/k", "/bkt/j", 1), nil))
	e.want(w, 403, "SignatureDoesNotMatch")
}

func TestBucketsAndIsolation(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/Bad_Name", nil, nil), 400, "InvalidBucketName")
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 409, "BucketAlreadyOwnedByYou")
	e.want(e.do("AKALPHA", "HEAD", "/bkt", nil, nil), 200, "")
	e.want(e.do("AKALPHA", "PUT", "/bkt/obj", []byte("x"), nil), 200, "")
	w := e.do("AKALPHA", "GET", "/", nil, nil)
	e.want(w, 200, "")
	if !strings.Contains(w.Body.String(), "<Name>bkt</Name>") {
		t.Errorf("list buckets %s", w.Body)
	}
	// beta: its own namespace; alpha's bucket does not exist for it.
	w = e.do("AKBETA", "GET", "/", nil, nil)
	if strings.Contains(w.Body.String(), "bkt") {
		t.Errorf("beta sees alpha's bucket: %s", w.Body)
	}
	e.want(e.do("AKBETA", "GET", "/bkt/obj", nil, nil), 404, "NoSuchBucket")
	e.want(e.do("AKBETA", "HEAD", "/bkt", nil, nil), 404, "")
	e.want(e.do("AKBETA", "PUT", "/bkt", nil, nil), 200, "") // a different bucket of the same name
	e.want(e.do("AKBETA", "GET", "/bkt/obj", nil, nil), 404, "NoSuchKey")
	// A reader may read, not write.
	e.want(e.do("AKREAD", "GET", "/bkt/obj", nil, nil), 200, "")
	e.want(e.do("AKREAD", "PUT", "/bkt/obj2", []byte("x"), nil), 403, "AccessDenied")
	e.want(e.do("AKALPHA", "DELETE", "/bkt", nil, nil), 409, "BucketNotEmpty")
	e.want(e.do("AKALPHA", "DELETE", "/bkt/obj", nil, nil), 204, "")
	e.want(e.do("AKALPHA", "DELETE", "/bkt", nil, nil), 204, "")
	e.want(e.do("AKALPHA", "DELETE", "/bkt", nil, nil), 404, "NoSuchBucket")
	// Virtual-hosted style.
	e.want(e.do("AKBETA", "PUT", "/bkt/vh", []byte("vh"), nil), 200, "")
	r := httptest.NewRequest("GET", "http://bkt.s3.example.test/vh", nil)
	Sign(r, "AKBETA", "beta-secret", "us-east-1", emptySHA256, e.now)
	rw := httptest.NewRecorder()
	e.h.ServeHTTP(rw, r)
	if rw.Code != 200 || rw.Body.String() != "vh" {
		t.Errorf("virtual host: %d %s", rw.Code, rw.Body)
	}
}

func TestObjects(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	body := []byte("0123456789")
	sum := md5.Sum(body)
	bad := md5.Sum([]byte("other"))
	e.want(e.do("AKALPHA", "PUT", "/bkt/k", body, map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(bad[:])}), 400, "BadDigest")
	e.want(e.do("AKALPHA", "PUT", "/bkt/k", body, map[string]string{"Content-MD5": "nope"}), 400, "InvalidDigest")
	e.want(e.do("AKALPHA", "HEAD", "/bkt/k", nil, nil), 404, "")
	// The payload does not match the signed x-amz-content-sha256.
	r := httptest.NewRequest("PUT", "http://127.0.0.1:9000/bkt/k", bytes.NewReader([]byte("tampered!!")))
	psum := sha256.Sum256(body)
	Sign(r, "AKALPHA", "alpha-secret", "us-east-1", hex.EncodeToString(psum[:]), e.now)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 400, "XAmzContentSHA256Mismatch")
	e.want(e.do("AKALPHA", "HEAD", "/bkt/k", nil, nil), 404, "")

	w = e.do("AKALPHA", "PUT", "/bkt/k", body, map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(sum[:]), "Content-Type": "text/plain", "X-Amz-Meta-Color": "blue"})
	e.want(w, 200, "")
	etag := `"` + hex.EncodeToString(sum[:]) + `"`
	if w.Header().Get("ETag") != etag {
		t.Errorf("etag %s", w.Header().Get("ETag"))
	}
	w = e.do("AKALPHA", "HEAD", "/bkt/k", nil, nil)
	if w.Header().Get("X-Amz-Meta-Color") != "blue" || w.Header().Get("Content-Length") != "10" || w.Header().Get("Content-Type") != "text/plain" {
		t.Errorf("head %v", w.Header())
	}
	w = e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"Range": "bytes=2-4"})
	if w.Code != 206 || w.Body.String() != "234" {
		t.Errorf("range %d %q", w.Code, w.Body)
	}
	w = e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"Range": "bytes=-3"})
	if w.Code != 206 || w.Body.String() != "789" {
		t.Errorf("suffix range %d %q", w.Code, w.Body)
	}
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-None-Match": etag}), 304, "")
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-Match": `"abc"`}), 412, "PreconditionFailed")
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-Match": etag}), 200, "")
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-Modified-Since": future}), 304, "")
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-Modified-Since": past}), 200, "")
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, map[string]string{"If-Unmodified-Since": past}), 412, "PreconditionFailed")

	// Copy, replacing metadata.
	w = e.do("AKALPHA", "PUT", "/bkt/k2", nil, map[string]string{"X-Amz-Copy-Source": "/bkt/k", "X-Amz-Metadata-Directive": "REPLACE", "X-Amz-Meta-Shape": "round"})
	e.want(w, 200, "")
	w = e.do("AKALPHA", "HEAD", "/bkt/k2", nil, nil)
	if w.Header().Get("X-Amz-Meta-Shape") != "round" || w.Header().Get("X-Amz-Meta-Color") != "" || w.Header().Get("ETag") != etag {
		t.Errorf("copy %v", w.Header())
	}
	// DeleteObjects.
	w = e.do("AKALPHA", "POST", "/bkt?delete", []byte(`<Delete><Object><Key>k</Key></Object><Object><Key>missing</Key></Object></Delete>`), nil)
	e.want(w, 200, "")
	if !strings.Contains(w.Body.String(), "<Deleted><Key>missing</Key></Deleted>") {
		t.Errorf("delete objects %s", w.Body)
	}
	e.want(e.do("AKALPHA", "GET", "/bkt/k", nil, nil), 404, "NoSuchKey")
}

type listResult struct {
	Keys     []string `xml:"Contents>Key"`
	Prefixes []string `xml:"CommonPrefixes>Prefix"`
	Trunc    bool     `xml:"IsTruncated"`
	Next     string   `xml:"NextContinuationToken"`
	NextM    string   `xml:"NextMarker"`
	KeyCount int
}

func TestList(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	for _, k := range []string{"a", "b/1", "b/2", "c d", "e/x/y", "f"} {
		e.want(e.do("AKALPHA", "PUT", "/bkt/"+strings.ReplaceAll(k, " ", "%20"), []byte(k), nil), 200, "")
	}
	list := func(q string) listResult {
		t.Helper()
		w := e.do("AKALPHA", "GET", "/bkt?"+q, nil, nil)
		e.want(w, 200, "")
		var res listResult
		if err := xml.Unmarshal(w.Body.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	res := list("list-type=2&delimiter=/")
	if strings.Join(res.Keys, ",") != "a,c d,f" || strings.Join(res.Prefixes, ",") != "b/,e/" || res.KeyCount != 5 {
		t.Errorf("v2 delimiter %+v", res)
	}
	res = list("list-type=2&delimiter=/&encoding-type=url")
	if strings.Join(res.Keys, ",") != "a,c+d,f" {
		t.Errorf("url encoding %+v", res)
	}
	// Page by 2 with continuation tokens.
	var all []string
	tok := ""
	for i := 0; i < 10; i++ {
		q := "list-type=2&max-keys=2"
		if tok != "" {
			q += "&continuation-token=" + tok
		}
		res = list(q)
		all = append(all, res.Keys...)
		if !res.Trunc {
			break
		}
		tok = res.Next
	}
	if strings.Join(all, ",") != "a,b/1,b/2,c d,e/x/y,f" {
		t.Errorf("paged %v", all)
	}
	res = list("list-type=2&start-after=b/2&prefix=")
	if strings.Join(res.Keys, ",") != "c d,e/x/y,f" {
		t.Errorf("start-after %+v", res)
	}
	res = list("prefix=b/&marker=b/1")
	if strings.Join(res.Keys, ",") != "b/2" {
		t.Errorf("v1 marker %+v", res)
	}
	res = list("max-keys=1&delimiter=/&marker=a")
	if !res.Trunc || res.NextM != "b/" || len(res.Prefixes) != 1 {
		t.Errorf("v1 next marker %+v", res)
	}
	e.want(e.do("AKALPHA", "GET", "/nobkt?list-type=2", nil, nil), 404, "NoSuchBucket")
}

// TestMultipart64MiB uploads 64 MiB in 8 MiB parts (one replaced, out of
// order) and reads it back byte for byte.
func TestMultipart64MiB(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	data := make([]byte, 64<<20)
	rand.Read(data)
	w := e.do("AKALPHA", "POST", "/bkt/big?uploads", nil, map[string]string{"X-Amz-Meta-Kind": "big", "Content-Type": "application/x-big"})
	e.want(w, 200, "")
	var init struct{ UploadId string }
	xml.Unmarshal(w.Body.Bytes(), &init)
	const part = 8 << 20
	etags := map[int]string{}
	upload := func(n int, b []byte) {
		sum := md5.Sum(b)
		w := e.do("AKALPHA", "PUT", fmt.Sprintf("/bkt/big?partNumber=%d&uploadId=%s", n, init.UploadId), b, map[string]string{"Content-MD5": base64.StdEncoding.EncodeToString(sum[:])})
		e.want(w, 200, "")
		etags[n] = w.Header().Get("ETag")
	}
	upload(3, make([]byte, 100)) // replaced below
	for n := 8; n >= 1; n-- {
		upload(n, data[(n-1)*part:n*part])
	}
	e.want(e.do("AKALPHA", "GET", "/bkt/big", nil, nil), 404, "NoSuchKey")
	w = e.do("AKALPHA", "GET", "/bkt/big?uploadId="+init.UploadId, nil, nil)
	e.want(w, 200, "")
	if strings.Count(w.Body.String(), "<Part>") != 8 {
		t.Errorf("list parts %s", w.Body)
	}
	e.want(e.do("AKBETA", "GET", "/bkt/big?uploadId="+init.UploadId, nil, nil), 404, "")
	var cm strings.Builder
	cm.WriteString("<CompleteMultipartUpload>")
	h := md5.New()
	for n := 1; n <= 8; n++ {
		fmt.Fprintf(&cm, "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>", n, etags[n])
		sum := md5.Sum(data[(n-1)*part : n*part])
		h.Write(sum[:])
	}
	cm.WriteString("</CompleteMultipartUpload>")
	w = e.do("AKALPHA", "POST", "/bkt/big?uploadId="+init.UploadId, []byte(cm.String()), nil)
	e.want(w, 200, "")
	wantETag := fmt.Sprintf(`"%x-8"`, h.Sum(nil))
	if !strings.Contains(w.Body.String(), "<ETag>"+strings.ReplaceAll(wantETag, `"`, "&#34;")+"</ETag>") {
		t.Errorf("complete %s, want %s", w.Body, wantETag)
	}
	w = e.do("AKALPHA", "GET", "/bkt/big", nil, nil)
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), data) || w.Header().Get("ETag") != wantETag || w.Header().Get("X-Amz-Meta-Kind") != "big" {
		t.Fatalf("get: %d %d bytes etag %s", w.Code, w.Body.Len(), w.Header().Get("ETag"))
	}
	w = e.do("AKALPHA", "GET", "/bkt/big", nil, map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", part-5, part+4)})
	if !bytes.Equal(w.Body.Bytes(), data[part-5:part+5]) {
		t.Errorf("range across parts")
	}
	// Abort and its errors.
	w = e.do("AKALPHA", "POST", "/bkt/gone?uploads", nil, nil)
	xml.Unmarshal(w.Body.Bytes(), &init)
	e.want(e.do("AKALPHA", "PUT", "/bkt/gone?partNumber=1&uploadId="+init.UploadId, []byte("x"), nil), 200, "")
	e.want(e.do("AKALPHA", "DELETE", "/bkt/gone?uploadId="+init.UploadId, nil, nil), 204, "")
	e.want(e.do("AKALPHA", "PUT", "/bkt/gone?partNumber=2&uploadId="+init.UploadId, []byte("x"), nil), 404, "NoSuchUpload")
	e.want(e.do("AKALPHA", "POST", "/bkt/gone?uploadId="+init.UploadId, []byte("<CompleteMultipartUpload/>"), nil), 404, "NoSuchUpload")
}

// TestStreamingUpload sends an aws-chunked body signed chunk by chunk, as
// the SDKs do for uploads over plain HTTP.
func TestStreamingUpload(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	data := make([]byte, 200000)
	rand.Read(data)
	build := func(tamperLast bool) *http.Request {
		r := httptest.NewRequest("PUT", "http://127.0.0.1:9000/bkt/stream", nil)
		r.Header.Set("Content-Encoding", "aws-chunked")
		r.Header.Set("X-Amz-Decoded-Content-Length", fmt.Sprint(len(data)))
		Sign(r, "AKALPHA", "alpha-secret", "us-east-1", streamingSigned, e.now)
		seed := r.Header.Get("Authorization")[strings.LastIndex(r.Header.Get("Authorization"), "=")+1:]
		amz := r.Header.Get("X-Amz-Date")
		c := credential{"AKALPHA", amz[:8], "us-east-1", "s3"}
		key := signingKey("alpha-secret", c)
		prev := seed
		var body bytes.Buffer
		for off := 0; ; off += 65536 {
			chunk := data[min(off, len(data)):min(off+65536, len(data))]
			cs := sha256.Sum256(chunk)
			sig := hex.EncodeToString(hmacSHA256(key, "AWS4-HMAC-SHA256-PAYLOAD\n"+amz+"\n"+c.scope()+"\n"+prev+"\n"+emptySHA256+"\n"+hex.EncodeToString(cs[:])))
			if tamperLast && len(chunk) == 0 {
				sig = strings.Repeat("0", 64)
			}
			fmt.Fprintf(&body, "%x;chunk-signature=%s\r\n", len(chunk), sig)
			body.Write(chunk)
			body.WriteString("\r\n")
			prev = sig
			if len(chunk) == 0 {
				break
			}
		}
		r.Body = io.NopCloser(&body)
		r.ContentLength = int64(body.Len())
		return r
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, build(false))
	e.want(w, 200, "")
	w = e.do("AKALPHA", "GET", "/bkt/stream", nil, nil)
	if !bytes.Equal(w.Body.Bytes(), data) {
		t.Fatal("streamed content differs")
	}
	e.want(e.do("AKALPHA", "DELETE", "/bkt/stream", nil, nil), 204, "")
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, build(true))
	e.want(w, 403, "SignatureDoesNotMatch")
	e.want(e.do("AKALPHA", "HEAD", "/bkt/stream", nil, nil), 404, "")
}

type brokenReader struct{}

func (brokenReader) Read([]byte) (int, error) { return 0, fmt.Errorf("client died") }

// TestDisconnectMidUpload: a PutObject whose client disconnects after
// 100 KiB of a promised 1 MiB stores nothing.
func TestDisconnectMidUpload(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	srv := httptest.NewServer(e.h)
	defer srv.Close()
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	req, _ := http.NewRequest("PUT", srv.URL+"/bkt/partial", io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), brokenReader{}))
	req.ContentLength = 1 << 20
	Sign(req, "AKALPHA", "alpha-secret", "us-east-1", unsignedPayload, e.now)
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	req.Write(conn)
	conn.Close()
	time.Sleep(200 * time.Millisecond)
	e.want(e.do("AKALPHA", "HEAD", "/bkt/partial", nil, nil), 404, "")
}

// TestUnsignedTrailerUpload: aws-chunked without chunk signatures and
// with a checksum trailer, as newer SDKs send by default.
func TestUnsignedTrailerUpload(t *testing.T) {
	e := newEnv(t, time.Now().UTC())
	e.want(e.do("AKALPHA", "PUT", "/bkt", nil, nil), 200, "")
	body := "5\r\nhello\r\n6\r\n world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"
	r := httptest.NewRequest("PUT", "http://127.0.0.1:9000/bkt/trailer", strings.NewReader(body))
	r.Header.Set("Content-Encoding", "aws-chunked")
	r.Header.Set("X-Amz-Decoded-Content-Length", "11")
	r.Header.Set("X-Amz-Trailer", "x-amz-checksum-crc32")
	Sign(r, "AKALPHA", "alpha-secret", "us-east-1", streamingUnsignedTrailer, e.now)
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 200, "")
	if w := e.do("AKALPHA", "GET", "/bkt/trailer", nil, nil); w.Body.String() != "hello world" {
		t.Errorf("got %q", w.Body)
	}
	// A body shorter than x-amz-decoded-content-length is not stored.
	r = httptest.NewRequest("PUT", "http://127.0.0.1:9000/bkt/short", strings.NewReader("5\r\nhello\r\n0\r\n\r\n"))
	r.Header.Set("X-Amz-Decoded-Content-Length", "11")
	Sign(r, "AKALPHA", "alpha-secret", "us-east-1", streamingUnsignedTrailer, e.now)
	w = httptest.NewRecorder()
	e.h.ServeHTTP(w, r)
	e.want(w, 400, "IncompleteBody")
	e.want(e.do("AKALPHA", "HEAD", "/bkt/short", nil, nil), 404, "")
}
