package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/strata-cloud/strata/internal/storage/blob"
)

// registryHost is the name the tests use for the registry; every
// connection is dialed to the test server whatever the name.
const registryHost = "registry.test"

// testPKI is a CA with a server and a client certificate.
type testPKI struct {
	ca         *x509.Certificate
	pool       *x509.CertPool
	server     tls.Certificate
	client     tls.Certificate
	strangerCA tls.Certificate // a client cert from a CA the server does not trust
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	ca, caKey := newCert(t, "test CA", nil, nil, true)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	stranger, strangerKey := newCert(t, "stranger CA", nil, nil, true)
	return testPKI{
		ca:         ca,
		pool:       pool,
		server:     leaf(t, registryHost, ca, caKey),
		client:     leaf(t, "system:node:n1", ca, caKey),
		strangerCA: leaf(t, "intruder", stranger, strangerKey),
	}
}

func newCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{cn},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.DNSNames = nil
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func leaf(t *testing.T, cn string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) tls.Certificate {
	cert, key := newCert(t, cn, ca, caKey, false)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// testRegistry is a registry behind a TLS server configured as Strata's
// server will be: client certificates verified if given.
type testRegistry struct {
	t      *testing.T
	dir    string
	reg    *Registry
	srv    *httptest.Server
	pki    testPKI
	pusher http.RoundTripper // presents the client certificate
	puller http.RoundTripper // anonymous
}

func startRegistry(t *testing.T, dir string, pki testPKI, opts Options) *testRegistry {
	t.Helper()
	reg, err := New(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{pki.server},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pki.pool,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	tr := &testRegistry{t: t, dir: dir, reg: reg, srv: srv, pki: pki}
	tr.pusher = tr.transport(&pki.client)
	tr.puller = tr.transport(nil)
	return tr
}

// transport dials the test server for any address and trusts the test CA.
func (tr *testRegistry) transport(cert *tls.Certificate) http.RoundTripper {
	cfg := &tls.Config{RootCAs: tr.pki.pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	addr := tr.srv.Listener.Addr().String()
	return &http.Transport{
		TLSClientConfig:   cfg,
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
}

func (tr *testRegistry) ref(s string) name.Reference {
	tr.t.Helper()
	r, err := name.ParseReference(registryHost + "/" + s)
	if err != nil {
		tr.t.Fatal(err)
	}
	return r
}

// do sends a raw request and returns status, headers and body.
func (tr *testRegistry) do(rt http.RoundTripper, method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
	tr.t.Helper()
	req, err := http.NewRequest(method, "https://"+registryHost+path, bytes.NewReader(body))
	if err != nil {
		tr.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		tr.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || len(eb.Errors) == 0 {
		t.Fatalf("not an OCI error body: %q (%v)", body, err)
	}
	return eb.Errors[0].Code
}

func TestPushPullImage(t *testing.T) {
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := tr.ref("library/busybox:1.36")
	if err := remote.Write(ref, img, remote.WithTransport(tr.pusher)); err != nil {
		t.Fatalf("push: %v", err)
	}
	got, err := remote.Image(ref, remote.WithTransport(tr.puller))
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	wantDigest, _ := img.Digest()
	gotDigest, _ := got.Digest()
	if gotDigest != wantDigest {
		t.Errorf("pulled digest %s, pushed %s", gotDigest, wantDigest)
	}
	if err := validate.Image(got); err != nil {
		t.Errorf("pulled image invalid: %v", err)
	}
	mt, _ := got.MediaType()
	desc, err := remote.Head(ref, remote.WithTransport(tr.puller))
	if err != nil || desc.MediaType != mt || desc.Digest != wantDigest {
		t.Errorf("HEAD manifest = %+v, %v; want %s %s", desc, err, mt, wantDigest)
	}
	// By digest as well as by tag.
	if _, err := remote.Image(tr.ref("library/busybox@"+wantDigest.String()), remote.WithTransport(tr.puller)); err != nil {
		t.Errorf("pull by digest: %v", err)
	}

	// crane, as an operator would use it.
	opt := crane.WithTransport(tr.puller)
	tags, err := crane.ListTags(registryHost+"/library/busybox", opt)
	if err != nil || strings.Join(tags, ",") != "1.36" {
		t.Errorf("tags = %v, %v", tags, err)
	}
	if err := crane.Push(img, registryHost+"/other/repo:v1", crane.WithTransport(tr.pusher)); err != nil {
		t.Fatalf("crane push: %v", err)
	}
	repos, err := crane.Catalog(registryHost, opt)
	if err != nil || strings.Join(repos, ",") != "library/busybox,other/repo" {
		t.Errorf("catalog = %v, %v", repos, err)
	}
	if d, err := crane.Digest(registryHost+"/other/repo:v1", opt); err != nil || d != wantDigest.String() {
		t.Errorf("crane digest = %s, %v", d, err)
	}
}

func TestPushIndex(t *testing.T) {
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	idx, err := random.Index(512, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := tr.ref("multi/arch:latest")
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(tr.pusher)); err != nil {
		t.Fatalf("push index: %v", err)
	}
	got, err := remote.Index(ref, remote.WithTransport(tr.puller))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := idx.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("index digest %s, want %s", d, want)
	}
	if err := validate.Index(got); err != nil {
		t.Errorf("pulled index invalid: %v", err)
	}
	desc, err := remote.Get(ref, remote.WithTransport(tr.puller))
	if err != nil || !desc.MediaType.IsIndex() {
		t.Errorf("Get = %v, %v; want an index", desc, err)
	}
}

func TestRangeGet(t *testing.T) {
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	content := []byte("0123456789abcdef")
	d := blob.FromBytes(content)
	code, hdr, _ := tr.do(tr.pusher, "POST", "/v2/r/blobs/uploads/?digest="+d.String(), content, nil)
	if code != http.StatusCreated || hdr.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("monolithic upload: %d %v", code, hdr)
	}
	tests := []struct {
		rangeHdr string
		status   int
		body     string
	}{
		{"", 200, string(content)},
		{"bytes=2-5", 206, "2345"},
		{"bytes=10-", 206, "abcdef"},
		{"bytes=-3", 206, "def"},
		{"bytes=100-200", 416, ""},
	}
	for _, tt := range tests {
		h := map[string]string{}
		if tt.rangeHdr != "" {
			h["Range"] = tt.rangeHdr
		}
		code, hdr, body := tr.do(tr.puller, "GET", "/v2/r/blobs/"+d.String(), nil, h)
		if code != tt.status {
			t.Errorf("Range %q: status %d, want %d", tt.rangeHdr, code, tt.status)
			continue
		}
		if code == 416 {
			if c := errorCode(t, body); c != codeRangeInvalid {
				t.Errorf("416 code %s", c)
			}
			continue
		}
		if string(body) != tt.body {
			t.Errorf("Range %q: body %q, want %q", tt.rangeHdr, body, tt.body)
		}
		if hdr.Get("Docker-Content-Digest") != d.String() {
			t.Errorf("Range %q: no digest header", tt.rangeHdr)
		}
	}
	code, hdr, body := tr.do(tr.puller, "HEAD", "/v2/r/blobs/"+d.String(), nil, nil)
	if code != 200 || hdr.Get("Content-Length") != "16" || len(body) != 0 {
		t.Errorf("HEAD: %d %v %q", code, hdr, body)
	}
}

func TestRestartServesPushedContent(t *testing.T) {
	dir, pki := t.TempDir(), newTestPKI(t)
	tr := startRegistry(t, dir, pki, Options{})
	img, _ := random.Image(1024, 2)
	if err := remote.Write(tr.ref("keep/me:v1"), img, remote.WithTransport(tr.pusher)); err != nil {
		t.Fatal(err)
	}
	// Leave a chunked upload half done across the restart too.
	code, hdr, _ := tr.do(tr.pusher, "POST", "/v2/keep/me/blobs/uploads/", nil, nil)
	if code != http.StatusAccepted {
		t.Fatalf("POST upload: %d", code)
	}
	loc := hdr.Get("Location")
	if code, _, _ := tr.do(tr.pusher, "PATCH", loc, []byte("first "), nil); code != http.StatusAccepted {
		t.Fatalf("PATCH: %d", code)
	}
	tr.srv.Close()

	tr2 := startRegistry(t, dir, pki, Options{})
	got, err := remote.Image(tr2.ref("keep/me:v1"), remote.WithTransport(tr2.puller))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("after restart digest %s, want %s", d, want)
	}
	if err := validate.Image(got); err != nil {
		t.Error(err)
	}
	d := blob.FromBytes([]byte("first second"))
	code, hdr, body := tr2.do(tr2.pusher, "PUT", loc+"?digest="+d.String(), []byte("second"), nil)
	if code != http.StatusCreated {
		t.Fatalf("finishing upload after restart: %d %s", code, body)
	}
	if hdr.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("digest header %q", hdr.Get("Docker-Content-Digest"))
	}
}

func TestPushAuthorization(t *testing.T) {
	pki := newTestPKI(t)
	onlyNodes := ClientCertPushAuthorizer{Allow: func(c *x509.Certificate, repo string) bool {
		return repo != "protected/repo"
	}}
	tr := startRegistry(t, t.TempDir(), pki, Options{Authorizer: onlyNodes})
	img, _ := random.Image(256, 1)

	// Anonymous push: refused with 401.
	err := remote.Write(tr.ref("x/y:v1"), img, remote.WithTransport(tr.puller))
	if err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous push: %v, want UNAUTHORIZED", err)
	}
	// A verified cert the policy rejects: 403.
	err = remote.Write(tr.ref("protected/repo:v1"), img, remote.WithTransport(tr.pusher))
	if err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("denied push: %v, want DENIED", err)
	}
	// A cert from an unknown CA does not even get through the handshake.
	// (Go's client would not offer it to a server asking for another CA,
	// so force it.)
	stranger := tr.transport(nil).(*http.Transport)
	stranger.TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &pki.strangerCA, nil
	}
	if resp, err := (&http.Client{Transport: stranger}).Get("https://" + registryHost + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("untrusted client certificate accepted")
	}

	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"POST", "/v2/x/y/blobs/uploads/", 401, codeUnauthorized},
		{"PUT", "/v2/x/y/manifests/v1", 401, codeUnauthorized},
		{"DELETE", "/v2/x/y/manifests/v1", 401, codeUnauthorized},
		{"PATCH", "/v2/x/y/blobs/uploads/" + strings.Repeat("a", 32), 401, codeUnauthorized},
		{"GET", "/v2/x/y/blobs/uploads/" + strings.Repeat("a", 32), 401, codeUnauthorized},
		{"GET", "/v2/x/y/manifests/v1", 404, codeManifestUnknown}, // pull is open
		{"GET", "/v2/x/y/tags/list", 404, codeNameUnknown},
	}
	for _, tt := range tests {
		code, _, body := tr.do(tr.puller, tt.method, tt.path, nil, nil)
		if code != tt.status || errorCode(t, body) != tt.code {
			t.Errorf("%s %s anonymous: %d %s, want %d %s", tt.method, tt.path, code, body, tt.status, tt.code)
		}
	}
	if code, hdr, _ := tr.do(tr.puller, "GET", "/v2/", nil, nil); code != 200 || hdr.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/ anonymous: %d %v", code, hdr)
	}
	// Pushing with the cert works, pulling without works.
	if err := remote.Write(tr.ref("x/y:v1"), img, remote.WithTransport(tr.pusher)); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(tr.ref("x/y:v1"), remote.WithTransport(tr.puller)); err != nil {
		t.Error(err)
	}
}

func TestConcurrentPushSameBlob(t *testing.T) {
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	img, _ := random.Image(256<<10, 2)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Same layers, same and different repositories and tags.
			errs <- remote.Write(tr.ref(fmt.Sprintf("conc/r%d:v%d", i%2, i)), img, remote.WithTransport(tr.pusher))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i := range 8 {
		got, err := remote.Image(tr.ref(fmt.Sprintf("conc/r%d:v%d", i%2, i)), remote.WithTransport(tr.puller))
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(got); err != nil {
			t.Error(err)
		}
	}
	n, _, _ := tr.reg.Blobs().Usage(context.Background())
	if n != 4 { // two layers, one config, one manifest
		t.Errorf("%d blobs stored, want 4", n)
	}
}

// TestProtocol drives the API by hand for the cases clients rarely hit.
func TestProtocol(t *testing.T) {
	tr := startRegistry(t, t.TempDir(), newTestPKI(t), Options{})
	layer := []byte("layer bytes")
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	ld, cd := blob.FromBytes(layer), blob.FromBytes(config)
	push := func(method, path string, body []byte, hdr map[string]string) (int, http.Header, []byte) {
		return tr.do(tr.pusher, method, path, body, hdr)
	}

	// Chunked upload with Content-Range, including an out-of-order chunk.
	code, hdr, _ := push("POST", "/v2/p/blobs/uploads/", nil, nil)
	if code != 202 || hdr.Get("Range") != "0-0" || hdr.Get("Docker-Upload-UUID") == "" {
		t.Fatalf("POST: %d %v", code, hdr)
	}
	loc := hdr.Get("Location")
	if code, hdr, _ = push("PATCH", loc, layer[:5], map[string]string{"Content-Range": "0-4"}); code != 202 || hdr.Get("Range") != "0-4" {
		t.Fatalf("PATCH 1: %d %v", code, hdr)
	}
	if code, _, body := push("PATCH", loc, layer[5:], map[string]string{"Content-Range": "3-9"}); code != 416 || errorCode(t, body) != codeRangeInvalid {
		t.Fatalf("out-of-order PATCH: %d %s", code, body)
	}
	if code, hdr, _ = push("GET", loc, nil, nil); code != 204 || hdr.Get("Range") != "0-4" {
		t.Fatalf("upload status: %d %v", code, hdr)
	}
	if code, _, _ = push("PATCH", loc, layer[5:], map[string]string{"Content-Range": fmt.Sprintf("5-%d", len(layer)-1)}); code != 202 {
		t.Fatalf("PATCH 2: %d", code)
	}
	if code, _, body := push("PUT", loc, nil, nil); code != 400 || errorCode(t, body) != codeDigestInvalid {
		t.Fatalf("PUT without digest: %d %s", code, body)
	}
	if code, hdr, _ = push("PUT", loc+"?digest="+ld.String(), nil, nil); code != 201 || hdr.Get("Location") != "/v2/p/blobs/"+ld.String() {
		t.Fatalf("PUT: %d %v", code, hdr)
	}
	if code, _, body := push("PATCH", loc, []byte("x"), nil); code != 404 || errorCode(t, body) != codeBlobUploadUnknown {
		t.Fatalf("PATCH after commit: %d %s", code, body)
	}

	// Cross-repository mount of a blob the registry has: 201; of one it
	// does not: a normal upload (202).
	if code, hdr, _ = push("POST", "/v2/q/blobs/uploads/?mount="+ld.String()+"&from=p", nil, nil); code != 201 || hdr.Get("Docker-Content-Digest") != ld.String() {
		t.Fatalf("mount: %d %v", code, hdr)
	}
	if code, _, _ = push("POST", "/v2/q/blobs/uploads/?mount="+blob.FromBytes([]byte("nope")).String()+"&from=p", nil, nil); code != 202 {
		t.Fatalf("mount of unknown blob: %d", code)
	}
	// A wrong digest on a monolithic upload stores nothing.
	bad := blob.FromBytes([]byte("something else"))
	if code, _, body := push("POST", "/v2/p/blobs/uploads/?digest="+bad.String(), layer, nil); code != 400 || errorCode(t, body) != codeDigestInvalid {
		t.Fatalf("bad monolithic digest: %d %s", code, body)
	}
	if code, _, _ := tr.do(tr.puller, "HEAD", "/v2/p/blobs/"+bad.String(), nil, nil); code != 404 {
		t.Fatalf("mismatched blob visible: %d", code)
	}

	manifest := func(layers ...blob.Digest) []byte {
		var ls []string
		for _, l := range layers {
			ls = append(ls, fmt.Sprintf(`{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":1}`, l))
		}
		return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":%d},"layers":[%s]}`,
			MediaTypeOCIManifest, cd, len(config), strings.Join(ls, ",")))
	}
	ociHdr := map[string]string{"Content-Type": MediaTypeOCIManifest}
	// Manifest before its config: MANIFEST_BLOB_UNKNOWN.
	if code, _, body := push("PUT", "/v2/p/manifests/v1", manifest(ld), ociHdr); code != 400 || errorCode(t, body) != codeManifestBlobUnknown {
		t.Fatalf("manifest with missing config: %d %s", code, body)
	}
	if code, _, _ := push("POST", "/v2/p/blobs/uploads/?digest="+cd.String(), config, nil); code != 201 {
		t.Fatal("config upload failed")
	}
	m := manifest(ld)
	md := blob.FromBytes(m)
	if code, hdr, _ := push("PUT", "/v2/p/manifests/v1", m, ociHdr); code != 201 || hdr.Get("Docker-Content-Digest") != md.String() {
		t.Fatalf("manifest PUT: %d %v", code, hdr)
	}
	for _, tag := range []string{"v2", "v3", "a"} {
		push("PUT", "/v2/p/manifests/"+tag, m, ociHdr)
	}

	tests := []struct {
		name       string
		method     string
		path       string
		body       []byte
		hdr        map[string]string
		status     int
		code       string // OCI error code, for errors
		wantBody   string // substring, for successes
		wantHeader map[string]string
	}{
		{name: "manifest by tag", method: "GET", path: "/v2/p/manifests/v1", status: 200, wantBody: `"schemaVersion":2`,
			wantHeader: map[string]string{"Content-Type": MediaTypeOCIManifest, "Docker-Content-Digest": md.String()}},
		{name: "manifest by digest", method: "GET", path: "/v2/p/manifests/" + md.String(), status: 200,
			wantHeader: map[string]string{"Docker-Content-Digest": md.String()}},
		{name: "manifest not in this repo", method: "GET", path: "/v2/other/manifests/" + md.String(), status: 404, code: codeManifestUnknown},
		{name: "unknown tag", method: "GET", path: "/v2/p/manifests/nope", status: 404, code: codeManifestUnknown},
		{name: "bad reference", method: "GET", path: "/v2/p/manifests/sha256:xyz", status: 400, code: codeDigestInvalid},
		{name: "unknown blob", method: "GET", path: "/v2/p/blobs/" + bad.String(), status: 404, code: codeBlobUnknown},
		{name: "bad blob digest", method: "GET", path: "/v2/p/blobs/sha256:1234", status: 400, code: codeDigestInvalid},
		{name: "bad name", method: "GET", path: "/v2/UPPER/case/tags/list", status: 400, code: codeNameInvalid},
		{name: "bad name dots", method: "GET", path: "/v2/a..b/tags/list", status: 400, code: codeNameInvalid},
		{name: "unknown repo tags", method: "GET", path: "/v2/nope/tags/list", status: 404, code: codeNameUnknown},
		{name: "tags", method: "GET", path: "/v2/p/tags/list", status: 200, wantBody: `{"name":"p","tags":["a","v1","v2","v3"]}`},
		{name: "tags page", method: "GET", path: "/v2/p/tags/list?n=2", status: 200, wantBody: `"tags":["a","v1"]`,
			wantHeader: map[string]string{"Link": `</v2/p/tags/list?last=v1&n=2>; rel="next"`}},
		{name: "tags next page", method: "GET", path: "/v2/p/tags/list?n=2&last=v1", status: 200, wantBody: `"tags":["v2","v3"]`},
		{name: "catalog", method: "GET", path: "/v2/_catalog", status: 200, wantBody: `{"repositories":["p"]}`},
		{name: "manifest digest mismatch", method: "PUT", path: "/v2/p/manifests/" + bad.String(), body: m, hdr: ociHdr, status: 400, code: codeDigestInvalid},
		{name: "manifest not JSON", method: "PUT", path: "/v2/p/manifests/x", body: []byte("{"), hdr: ociHdr, status: 400, code: codeManifestInvalid},
		{name: "manifest type mismatch", method: "PUT", path: "/v2/p/manifests/x", body: m, hdr: map[string]string{"Content-Type": MediaTypeDockerManifest}, status: 400, code: codeManifestInvalid},
		{name: "manifest bad tag", method: "PUT", path: "/v2/p/manifests/-bad", body: m, hdr: ociHdr, status: 400, code: codeDigestInvalid},
		{name: "manifest missing layer", method: "PUT", path: "/v2/p/manifests/x", body: manifest(ld, bad), hdr: ociHdr, status: 400, code: codeManifestBlobUnknown},
		{name: "manifest too big", method: "PUT", path: "/v2/p/manifests/x", body: bytes.Repeat([]byte(" "), maxManifestBytes+1), hdr: ociHdr, status: 413, code: codeSizeInvalid},
		{name: "blob delete unsupported", method: "DELETE", path: "/v2/p/blobs/" + ld.String(), status: 405, code: codeUnsupported},
		{name: "method not allowed", method: "POST", path: "/v2/p/manifests/v1", status: 405, code: codeUnsupported},
		{name: "unknown endpoint", method: "GET", path: "/v2/p/whatever", status: 404, code: codeNameUnknown},
		{name: "delete tag", method: "DELETE", path: "/v2/p/manifests/v3", status: 202},
		{name: "deleted tag gone", method: "GET", path: "/v2/p/manifests/v3", status: 404, code: codeManifestUnknown},
		{name: "still there by other tag", method: "HEAD", path: "/v2/p/manifests/v2", status: 200},
		{name: "delete manifest", method: "DELETE", path: "/v2/p/manifests/" + md.String(), status: 202},
		{name: "its tags are gone", method: "GET", path: "/v2/p/manifests/v1", status: 404, code: codeManifestUnknown},
		{name: "tags after delete", method: "GET", path: "/v2/p/tags/list", status: 200, wantBody: `"tags":[]`},
		{name: "delete unknown", method: "DELETE", path: "/v2/p/manifests/" + md.String(), status: 404, code: codeManifestUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, body := push(tt.method, tt.path, tt.body, tt.hdr)
			if code != tt.status {
				t.Fatalf("status %d, want %d (%s)", code, tt.status, body)
			}
			if tt.code != "" && tt.method != "HEAD" {
				if got := errorCode(t, body); got != tt.code {
					t.Errorf("code %s, want %s", got, tt.code)
				}
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %s, want it to contain %s", body, tt.wantBody)
			}
			for k, v := range tt.wantHeader {
				if hdr.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, hdr.Get(k), v)
				}
			}
		})
	}
}

func TestParseManifest(t *testing.T) {
	d := func(s string) string { return string(blob.FromBytes([]byte(s))) }
	img := fmt.Sprintf(`{"schemaVersion":2,%%s"config":{"digest":%q,"size":1},"layers":[{"digest":%q,"size":2},{"digest":%q,"size":3,"urls":["http://x"]}]}`, d("c"), d("l"), d("foreign"))
	idx := fmt.Sprintf(`{"schemaVersion":2,%%s"manifests":[{"mediaType":%q,"digest":%q,"size":1}]}`, MediaTypeOCIManifest, d("m"))
	tests := []struct {
		name        string
		contentType string
		body        string
		wantType    string
		wantBlobs   int
		wantKids    int
		wantCode    string
	}{
		{"oci manifest", MediaTypeOCIManifest, fmt.Sprintf(img, ""), MediaTypeOCIManifest, 2, 0, ""},
		{"oci manifest with mediaType", MediaTypeOCIManifest, fmt.Sprintf(img, `"mediaType":"`+MediaTypeOCIManifest+`",`), MediaTypeOCIManifest, 2, 0, ""},
		{"docker manifest", MediaTypeDockerManifest, fmt.Sprintf(img, `"mediaType":"`+MediaTypeDockerManifest+`",`), MediaTypeDockerManifest, 2, 0, ""},
		{"content type with params", MediaTypeOCIManifest + "; charset=utf-8", fmt.Sprintf(img, ""), MediaTypeOCIManifest, 2, 0, ""},
		{"type from body", "", fmt.Sprintf(img, `"mediaType":"`+MediaTypeDockerManifest+`",`), MediaTypeDockerManifest, 2, 0, ""},
		{"guessed manifest", "application/json", fmt.Sprintf(img, ""), MediaTypeOCIManifest, 2, 0, ""},
		{"guessed index", "", fmt.Sprintf(idx, ""), MediaTypeOCIIndex, 0, 1, ""},
		{"oci index", MediaTypeOCIIndex, fmt.Sprintf(idx, ""), MediaTypeOCIIndex, 0, 1, ""},
		{"docker list", MediaTypeDockerManifestList, fmt.Sprintf(idx, `"mediaType":"`+MediaTypeDockerManifestList+`",`), MediaTypeDockerManifestList, 0, 1, ""},
		{"type mismatch", MediaTypeOCIManifest, fmt.Sprintf(img, `"mediaType":"`+MediaTypeDockerManifest+`",`), "", 0, 0, codeManifestInvalid},
		{"schema 1", "application/vnd.docker.distribution.manifest.v1+json", `{"schemaVersion":1}`, "", 0, 0, codeManifestInvalid},
		{"unknown type", "text/plain", fmt.Sprintf(img, ""), "", 0, 0, codeManifestInvalid},
		{"no config", MediaTypeOCIManifest, `{"schemaVersion":2,"layers":[]}`, "", 0, 0, codeManifestInvalid},
		{"index with layers", MediaTypeOCIIndex, `{"schemaVersion":2,"manifests":[],"layers":[]}`, "", 0, 0, codeManifestInvalid},
		{"bad digest", MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"digest":"sha256:abc"}}`, "", 0, 0, codeDigestInvalid},
		{"sha512", MediaTypeOCIManifest, `{"schemaVersion":2,"config":{"digest":"sha512:` + strings.Repeat("a", 128) + `"}}`, "", 0, 0, codeManifestBlobUnknown},
		{"negative size", MediaTypeOCIManifest, fmt.Sprintf(`{"schemaVersion":2,"config":{"digest":%q,"size":-1}}`, d("c")), "", 0, 0, codeManifestInvalid},
		{"not json", MediaTypeOCIManifest, `[`, "", 0, 0, codeManifestInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := parseManifest(tt.contentType, []byte(tt.body))
			if tt.wantCode != "" {
				me, ok := err.(*manifestError)
				if !ok || me.code != tt.wantCode {
					t.Fatalf("err = %v, want code %s", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.MediaType != tt.wantType || len(p.Blobs) != tt.wantBlobs || len(p.Children) != tt.wantKids {
				t.Errorf("got %s, %d blobs, %d children; want %s, %d, %d", p.MediaType, len(p.Blobs), len(p.Children), tt.wantType, tt.wantBlobs, tt.wantKids)
			}
		})
	}
}

func TestPaginate(t *testing.T) {
	list := []string{"a", "b", "c", "d"}
	tests := []struct {
		n, last  string
		want     string
		wantNext string
		wantErr  bool
	}{
		{"", "", "a,b,c,d", "", false},
		{"2", "", "a,b", "b", false},
		{"2", "b", "c,d", "", false},
		{"10", "", "a,b,c,d", "", false},
		{"0", "", "", "", false},
		{"", "bb", "c,d", "", false},
		{"", "z", "", "", false},
		{"-1", "", "", "", true},
		{"x", "", "", "", true},
	}
	for _, tt := range tests {
		page, next, err := paginate(list, tt.n, tt.last)
		if (err != nil) != tt.wantErr {
			t.Errorf("paginate(n=%q, last=%q) err = %v", tt.n, tt.last, err)
			continue
		}
		if got := strings.Join(page, ","); got != tt.want || next != tt.wantNext {
			t.Errorf("paginate(n=%q, last=%q) = %q, %q; want %q, %q", tt.n, tt.last, got, next, tt.want, tt.wantNext)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := map[string]bool{
		"busybox": true, "library/busybox": true, "a/b/c/d": true, "my-app_1.2/x__y": true,
		"": false, "Busybox": false, "/a": false, "a/": false, "a//b": false, "a/../b": false,
		"_tags": false, "a/_manifests": false, "-a": false, "a-": false, strings.Repeat("a", 256): false,
	}
	for n, want := range tests {
		if got := validName(n); got != want {
			t.Errorf("validName(%q) = %v, want %v", n, got, want)
		}
	}
}

var _ v1.Image // keep the v1 import for readers of the tests' types

func TestGroupPushAuthorizer(t *testing.T) {
	auth := ClientCertPushAuthorizer{Allow: InGroup("system:masters"), Requirement: "the admin's certificate"}
	withCert := func(cn string, groups ...string) *http.Request {
		r := httptest.NewRequest("PUT", "/v2/x/manifests/1", nil)
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: groups}}
		r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
		return r
	}
	unverified := httptest.NewRequest("PUT", "/v2/x/manifests/1", nil)
	unverified.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{Subject: pkix.Name{Organization: []string{"system:masters"}}}}}
	for _, tc := range []struct {
		name string
		r    *http.Request
		push bool
		want error // nil, ErrUnauthorized or ErrDenied
	}{
		{"admin pushes", withCert("strata-admin", "system:masters"), true, nil},
		{"admin among other groups", withCert("ops", "team", "system:masters"), true, nil},
		{"node may not push", withCert("system:node:n1", "system:nodes"), true, ErrDenied},
		{"no groups", withCert("someone"), true, ErrDenied},
		{"anonymous may not push", httptest.NewRequest("PUT", "/v2/x/manifests/1", nil), true, ErrUnauthorized},
		{"an unverified certificate proves nothing", unverified, true, ErrUnauthorized},
		{"anonymous pulls", httptest.NewRequest("GET", "/v2/x/manifests/1", nil), false, nil},
		{"node pulls", withCert("system:node:n1", "system:nodes"), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := auth.Authorize(tc.r, "x", tc.push)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("got %v, want %v", err, tc.want)
			case tc.want != nil && !strings.Contains(err.Error(), "pushing needs the admin's certificate"):
				t.Fatalf("refusal %q does not say who may push", err)
			}
		})
	}
}

func TestPutManifestInProcess(t *testing.T) {
	reg, err := New(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	layer, config := []byte("layer"), []byte("{}")
	manifest := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":%q,"size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":%q,"size":5}]}`,
		MediaTypeOCIManifest, blob.FromBytes(config), blob.FromBytes(layer)))
	// Its blobs must be stored first, as for a push.
	if _, err := reg.PutManifest(ctx, "vm-images/demo/debian", "v1", MediaTypeOCIManifest, manifest); err == nil || !strings.Contains(err.Error(), "blob unknown") {
		t.Fatalf("manifest before its blobs: %v, want a refusal", err)
	}
	for _, b := range [][]byte{layer, config} {
		if _, err := reg.Blobs().Put(ctx, blob.FromBytes(b), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := reg.PutManifest(ctx, "vm-images/demo/debian", "v1", MediaTypeOCIManifest, manifest)
	if err != nil || d != blob.FromBytes(manifest) {
		t.Fatalf("PutManifest = %s, %v", d, err)
	}
	// Served like a pushed one, by tag and by digest.
	for _, ref := range []string{"v1", d.String()} {
		got, mt, err := reg.resolveManifest(ctx, "vm-images/demo/debian", ref)
		if err != nil || got != d || mt != MediaTypeOCIManifest {
			t.Errorf("resolve %s = %s %s, %v", ref, got, mt, err)
		}
	}
	if _, err := reg.PutManifest(ctx, "Bad Name", "", MediaTypeOCIManifest, manifest); err == nil {
		t.Error("an invalid repository name is accepted")
	}
}
