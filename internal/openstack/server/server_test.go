package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestMount(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(ln, nil, slog.New(slog.DiscardHandler))
	s.Mount("/identity", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "identity "+r.URL.Path)
	}))
	s.Mount("/object-store", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "swift "+r.URL.Path)
	}))
	s.Mount("/object-store-extra", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "extra "+r.URL.Path)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error)
	go func() { served <- s.Serve(ctx) }()
	for path, want := range map[string]string{
		"/identity/v3/auth/tokens": "identity /v3/auth/tokens",
		"/identity":                "identity /",
		"/identity/":               "identity /",
		"/network/v2.0":            `"code": 404`,
		"/identityx":               `"code": 404`,
		// Swift object names may hold "//" and "..": no cleaning, no redirect.
		"/object-store/v1/AUTH_p/c/a//b":   "swift /v1/AUTH_p/c/a//b",
		"/object-store/v1/AUTH_p/c/x/../y": "swift /v1/AUTH_p/c/x/../y",
		"/object-store-extra/v1":           "extra /v1",
	} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s: %q, want %q", path, body, want)
		}
	}
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}
