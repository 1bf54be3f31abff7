package swift_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

type hashT = hash.Hash

type client struct {
	t    *testing.T
	base string
}

func (c client) do(token, method, path string, body []byte, hdr map[string]string) (*http.Response, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func (c client) want(token, method, path string, body []byte, hdr map[string]string, status int) (*http.Response, string) {
	c.t.Helper()
	resp, b := c.do(token, method, path, body, hdr)
	if resp.StatusCode != status {
		c.t.Fatalf("%s %s: %d %q, want %d", method, path, resp.StatusCode, b, status)
	}
	return resp, b
}

const a = "/object-store/v1/AUTH_alpha"

func TestAuthAndIsolation(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	_, body := c.want("", "GET", a, nil, nil, 401)
	if !strings.Contains(body, "Unauthorized") {
		t.Errorf("401 body %q", body)
	}
	c.want("bogus", "GET", a, nil, nil, 401)
	c.want("tok-alpha", "PUT", a+"/c", nil, nil, 201)
	c.want("tok-alpha", "PUT", a+"/c/o", []byte("x"), nil, 201)
	// beta cannot reach alpha's account at all.
	for _, m := range []string{"GET", "HEAD", "PUT", "DELETE", "POST"} {
		c.want("tok-beta", m, a+"/c/o", nil, nil, 403)
	}
	c.want("tok-beta", "GET", a, nil, nil, 403)
	_, body = c.want("tok-beta", "GET", "/object-store/v1/AUTH_beta?format=json", nil, nil, 200)
	if body != "[]" {
		t.Errorf("beta account %q", body)
	}
	// A reader reads only.
	c.want("tok-read", "GET", a+"/c/o", nil, nil, 200)
	c.want("tok-read", "PUT", a+"/c/p", []byte("x"), nil, 403)
	c.want("tok-read", "DELETE", a+"/c/o", nil, nil, 403)
	// /info needs no token.
	_, body = c.want("", "GET", "/object-store/info", nil, nil, 200)
	var info map[string]any
	if json.Unmarshal([]byte(body), &info); info["slo"] == nil || info["tempurl"] == nil {
		t.Errorf("info %s", body)
	}
}

func TestAccountAndContainers(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	tok := "tok-alpha"
	resp, body := c.want(tok, "GET", a, nil, nil, 204)
	if resp.Header.Get("X-Account-Container-Count") != "0" || body != "" {
		t.Errorf("empty account %v %q", resp.Header, body)
	}
	for _, n := range []string{"apple", "banana", "cherry", "date"} {
		c.want(tok, "PUT", a+"/"+n, nil, map[string]string{"X-Container-Meta-Fruit": n}, 201)
	}
	c.want(tok, "PUT", a+"/apple", nil, nil, 202)
	c.want(tok, "PUT", a+"/apple/x", []byte("12345"), nil, 201)
	_, body = c.want(tok, "GET", a, nil, nil, 200)
	if body != "apple\nbanana\ncherry\ndate\n" {
		t.Errorf("plain %q", body)
	}
	_, body = c.want(tok, "GET", a+"?format=json&marker=apple&limit=2", nil, nil, 200)
	var cs []struct {
		Name  string
		Count int
		Bytes int
	}
	json.Unmarshal([]byte(body), &cs)
	if len(cs) != 2 || cs[0].Name != "banana" || cs[1].Name != "cherry" {
		t.Errorf("json %s", body)
	}
	_, body = c.want(tok, "GET", a+"?format=json&prefix=a", nil, nil, 200)
	json.Unmarshal([]byte(body), &cs)
	if len(cs) != 1 || cs[0].Count != 1 || cs[0].Bytes != 5 {
		t.Errorf("prefix %s", body)
	}
	resp, _ = c.want(tok, "HEAD", a, nil, nil, 204)
	if resp.Header.Get("X-Account-Container-Count") != "4" || resp.Header.Get("X-Account-Object-Count") != "1" || resp.Header.Get("X-Account-Bytes-Used") != "5" {
		t.Errorf("head account %v", resp.Header)
	}
	c.want(tok, "POST", a, nil, map[string]string{"X-Account-Meta-Owner": "me"}, 204)
	resp, _ = c.want(tok, "HEAD", a, nil, nil, 204)
	if resp.Header.Get("X-Account-Meta-Owner") != "me" {
		t.Errorf("account meta %v", resp.Header)
	}
	c.want(tok, "POST", a+"/banana", nil, map[string]string{"X-Container-Meta-Color": "yellow", "X-Remove-Container-Meta-Fruit": "x"}, 204)
	resp, _ = c.want(tok, "HEAD", a+"/banana", nil, nil, 204)
	if resp.Header.Get("X-Container-Meta-Color") != "yellow" || resp.Header.Get("X-Container-Meta-Fruit") != "" {
		t.Errorf("container meta %v", resp.Header)
	}
	c.want(tok, "POST", a+"/nope", nil, nil, 404)
	c.want(tok, "HEAD", a+"/nope", nil, nil, 404)
	_, body = c.want(tok, "DELETE", a+"/apple", nil, nil, 409)
	if !strings.Contains(body, "Conflict") {
		t.Errorf("409 body %q", body)
	}
	c.want(tok, "DELETE", a+"/banana", nil, nil, 204)
	c.want(tok, "DELETE", a+"/banana", nil, nil, 404)

	// Object listing.
	for _, n := range []string{"b/1", "b/2", "c", "d/e/f"} {
		c.want(tok, "PUT", a+"/apple/"+n, []byte(n), nil, 201)
	}
	_, body = c.want(tok, "GET", a+"/apple?delimiter=/", nil, nil, 200)
	if body != "b/\nc\nd/\nx\n" {
		t.Errorf("delimiter %q", body)
	}
	_, body = c.want(tok, "GET", a+"/apple?format=json&prefix=b/&marker=b/1", nil, nil, 200)
	var os []map[string]any
	json.Unmarshal([]byte(body), &os)
	if len(os) != 1 || os[0]["name"] != "b/2" || os[0]["hash"] != fmt.Sprintf("%x", md5.Sum([]byte("b/2"))) || os[0]["bytes"] != 3.0 {
		t.Errorf("json listing %s", body)
	}
	_, body = c.want(tok, "GET", a+"/apple?format=json&delimiter=/&limit=2", nil, nil, 200)
	if !strings.Contains(body, `{"subdir":"b/"}`) || strings.Contains(body, `"d/"`) {
		t.Errorf("json subdirs %s", body)
	}
	c.want(tok, "GET", a+"/nope?format=json", nil, nil, 404)
}

func TestObjects(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	tok := "tok-alpha"
	c.want(tok, "PUT", a+"/nope/o", []byte("x"), nil, 404)
	c.want(tok, "PUT", a+"/c", nil, nil, 201)
	body := []byte("0123456789")
	sum := fmt.Sprintf("%x", md5.Sum(body))
	_, eb := c.want(tok, "PUT", a+"/c/o.txt", body, map[string]string{"ETag": strings.Repeat("0", 32)}, 422)
	if !strings.Contains(eb, "Unprocessable") {
		t.Errorf("422 body %q", eb)
	}
	c.want(tok, "HEAD", a+"/c/o.txt", nil, nil, 404)
	resp, _ := c.want(tok, "PUT", a+"/c/o.txt", body, map[string]string{"ETag": sum, "X-Object-Meta-Color": "red"}, 201)
	if resp.Header.Get("ETag") != sum {
		t.Errorf("etag %s", resp.Header.Get("ETag"))
	}
	resp, got := c.want(tok, "GET", a+"/c/o.txt", nil, nil, 200)
	if got != string(body) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("X-Object-Meta-Color") != "red" || resp.Header.Get("X-Timestamp") == "" {
		t.Errorf("get %q %v", got, resp.Header)
	}
	_, got = c.want(tok, "GET", a+"/c/o.txt", nil, map[string]string{"Range": "bytes=3-5"}, 206)
	if got != "345" {
		t.Errorf("range %q", got)
	}
	c.want(tok, "GET", a+"/c/o.txt", nil, map[string]string{"If-None-Match": sum}, 304)
	c.want(tok, "GET", a+"/c/o.txt", nil, map[string]string{"If-Match": "nope"}, 412)
	c.want(tok, "GET", a+"/c/o.txt", nil, map[string]string{"Range": "bytes=50-60"}, 416)
	c.want(tok, "POST", a+"/c/o.txt", nil, map[string]string{"X-Object-Meta-Shape": "square"}, 202)
	resp, _ = c.want(tok, "HEAD", a+"/c/o.txt", nil, nil, 200)
	if resp.Header.Get("X-Object-Meta-Shape") != "square" || resp.Header.Get("X-Object-Meta-Color") != "" || resp.Header.Get("Content-Length") != "10" {
		t.Errorf("post replaced meta %v", resp.Header)
	}
	c.want(tok, "COPY", a+"/c/o.txt", nil, map[string]string{"Destination": "c/copy"}, 201)
	c.want(tok, "PUT", a+"/c/copy2", nil, map[string]string{"X-Copy-From": "/c/o.txt", "X-Object-Meta-New": "1"}, 201)
	resp, got = c.want(tok, "GET", a+"/c/copy2", nil, nil, 200)
	if got != string(body) || resp.Header.Get("X-Object-Meta-Shape") != "square" || resp.Header.Get("X-Object-Meta-New") != "1" {
		t.Errorf("copy %q %v", got, resp.Header)
	}
	c.want(tok, "DELETE", a+"/c/copy", nil, nil, 204)
	c.want(tok, "DELETE", a+"/c/copy", nil, nil, 404)
	c.want(tok, "COPY", a+"/c/o.txt", nil, map[string]string{"Destination": "bad"}, 412)
	// Chunked transfer without Content-Length works.
	req, _ := http.NewRequest("PUT", srv.URL+a+"/c/chunked", io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")))
	req.Header.Set("X-Auth-Token", tok)
	req.ContentLength = -1
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != 201 {
		t.Fatalf("chunked put %v %v", r, err)
	}
}

func TestLargeObjects(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	tok := "tok-alpha"
	c.want(tok, "PUT", a+"/c", nil, nil, 201)
	c.want(tok, "PUT", a+"/segs", nil, nil, 201)
	var etags []string
	for i, s := range []string{"aaa", "bbbb", "cc"} {
		resp, _ := c.want(tok, "PUT", fmt.Sprintf("%s/segs/part/%02d", a, i), []byte(s), nil, 201)
		etags = append(etags, resp.Header.Get("ETag"))
	}
	// DLO.
	c.want(tok, "PUT", a+"/c/dlo", nil, map[string]string{"X-Object-Manifest": "segs/part/"}, 201)
	resp, got := c.want(tok, "GET", a+"/c/dlo", nil, nil, 200)
	if got != "aaabbbbcc" || resp.Header.Get("X-Object-Manifest") != "segs/part/" {
		t.Errorf("dlo %q %v", got, resp.Header)
	}
	// SLO.
	manifest, _ := json.Marshal([]map[string]any{
		{"path": "/segs/part/02", "etag": etags[2], "size_bytes": 2},
		{"path": "/segs/part/00", "etag": etags[0], "size_bytes": 3},
	})
	bad, _ := json.Marshal([]map[string]any{{"path": "/segs/part/00", "etag": etags[1], "size_bytes": 3}})
	_, eb := c.want(tok, "PUT", a+"/c/slo?multipart-manifest=put", bad, nil, 400)
	if !strings.Contains(eb, "Etag Mismatch") {
		t.Errorf("bad manifest %q", eb)
	}
	resp, _ = c.want(tok, "PUT", a+"/c/slo?multipart-manifest=put", manifest, nil, 201)
	wantETag := fmt.Sprintf(`"%x"`, md5.Sum([]byte(etags[2]+etags[0])))
	if resp.Header.Get("ETag") != wantETag {
		t.Errorf("slo etag %s, want %s", resp.Header.Get("ETag"), wantETag)
	}
	resp, got = c.want(tok, "GET", a+"/c/slo", nil, nil, 200)
	if got != "ccaaa" || resp.Header.Get("X-Static-Large-Object") != "True" || resp.Header.Get("ETag") != wantETag {
		t.Errorf("slo %q %v", got, resp.Header)
	}
	_, got = c.want(tok, "GET", a+"/c?format=json&prefix=slo", nil, nil, 200)
	if !strings.Contains(got, `"bytes":5`) || !strings.Contains(got, `"hash":"`+strings.Trim(wantETag, `"`)+`"`) {
		t.Errorf("slo listing %s", got)
	}
	_, got = c.want(tok, "GET", a+"/c/slo", nil, map[string]string{"Range": "bytes=1-3"}, 206)
	if got != "caa" {
		t.Errorf("slo range %q", got)
	}
	_, got = c.want(tok, "GET", a+"/c/slo?multipart-manifest=get", nil, nil, 200)
	if !strings.Contains(got, `"name":"/segs/part/02"`) {
		t.Errorf("manifest get %s", got)
	}
	_, got = c.want(tok, "DELETE", a+"/c/slo?multipart-manifest=delete", nil, nil, 200)
	if !strings.Contains(got, "Number Deleted: 3") {
		t.Errorf("manifest delete %q", got)
	}
	_, got = c.want(tok, "GET", a+"/segs", nil, nil, 200)
	if got != "part/01\n" {
		t.Errorf("segments left %q", got)
	}
}

func TestTempURL(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	tok := "tok-alpha"
	c.want(tok, "PUT", a+"/c", nil, nil, 201)
	c.want(tok, "PUT", a+"/c/o", []byte("secret data"), nil, 201)
	c.want(tok, "POST", a, nil, map[string]string{"X-Account-Meta-Temp-URL-Key": "k1"}, 204)
	c.want(tok, "POST", a+"/c", nil, map[string]string{"X-Container-Meta-Temp-URL-Key": "k2"}, 204)
	sign := func(newHash func() hashT, key, method string, exp int64, p string) string {
		m := hmac.New(newHash, []byte(key))
		fmt.Fprintf(m, "%s\n%d\n%s", method, exp, p)
		return hex.EncodeToString(m.Sum(nil))
	}
	exp := time.Now().Add(time.Hour).Unix()
	p := "/v1/AUTH_alpha/c/o"
	for _, tc := range []struct {
		name, method, sig string
		exp               int64
		status            int
	}{
		{"sha1 account key", "GET", sign(sha1.New, "k1", "GET", exp, p), exp, 200},
		{"sha256 container key", "GET", sign(sha256.New, "k2", "GET", exp, p), exp, 200},
		{"with prefix", "GET", sign(sha256.New, "k1", "GET", exp, "/object-store"+p), exp, 200},
		{"head with GET sig", "HEAD", sign(sha1.New, "k1", "GET", exp, p), exp, 200},
		{"wrong key", "GET", sign(sha1.New, "nope", "GET", exp, p), exp, 401},
		{"wrong method", "DELETE", sign(sha1.New, "k1", "DELETE", exp, p), exp, 401},
		{"PUT sig used for GET", "GET", sign(sha1.New, "k1", "PUT", exp, p), exp, 401},
		{"expired", "GET", sign(sha1.New, "k1", "GET", 1000, p), 1000, 401},
	} {
		resp, body := c.do("", tc.method, fmt.Sprintf("%s/c/o?temp_url_sig=%s&temp_url_expires=%d", a, tc.sig, tc.exp), nil, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %q", tc.name, resp.StatusCode, body)
		}
		if tc.status == 200 && tc.method == "GET" && (body != "secret data" || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment")) {
			t.Errorf("%s: %q %v", tc.name, body, resp.Header)
		}
	}
	// PUT through a temp URL.
	sig := sign(sha256.New, "k1", "PUT", exp, "/v1/AUTH_alpha/c/up")
	c.want("", "PUT", fmt.Sprintf("%s/c/up?temp_url_sig=%s&temp_url_expires=%d", a, sig, exp), []byte("uploaded"), nil, 201)
	_, got := c.want(tok, "GET", a+"/c/up", nil, nil, 200)
	if got != "uploaded" {
		t.Errorf("temp url put %q", got)
	}
	// A PUT temp URL cannot copy another object in.
	c.want("", "PUT", fmt.Sprintf("%s/c/up?temp_url_sig=%s&temp_url_expires=%d", a, sig, exp), []byte("again"), map[string]string{"X-Copy-From": "c/o"}, 201)
	if _, got = c.want(tok, "GET", a+"/c/up", nil, nil, 200); got != "again" {
		t.Errorf("temp url put with X-Copy-From: %q", got)
	}
	c.want("", "PUT", fmt.Sprintf("%s/c/up?temp_url_sig=%s&temp_url_expires=%d&multipart-manifest=put", a, sig, exp), []byte("[]"), nil, 400)
}

type brokenReader struct{}

func (brokenReader) Read([]byte) (int, error) { return 0, fmt.Errorf("client died") }

// TestDisconnectMidUpload: a client that promises 1 MiB and disconnects
// after 100 KiB leaves no object (and the old one, when overwriting).
func TestDisconnectMidUpload(t *testing.T) {
	srv, _ := newServer(t)
	c := client{t, srv.URL}
	c.want("tok-alpha", "PUT", a+"/c", nil, nil, 201)
	c.want("tok-alpha", "PUT", a+"/c/old", []byte("old"), nil, 201)
	for _, name := range []string{"new", "old"} {
		req, _ := http.NewRequest("PUT", srv.URL+a+"/c/"+name, io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), brokenReader{}))
		req.ContentLength = 1 << 20
		req.Header.Set("X-Auth-Token", "tok-alpha")
		conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		req.Write(conn) // fails at the broken reader
		conn.Close()
	}
	time.Sleep(200 * time.Millisecond) // the handler sees the EOF
	c.want("tok-alpha", "HEAD", a+"/c/new", nil, nil, 404)
	_, got := c.want("tok-alpha", "GET", a+"/c/old", nil, nil, 200)
	if got != "old" {
		t.Errorf("old = %q", got)
	}
}
