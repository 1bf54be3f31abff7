// Package server is the one HTTPS listener of Strata's OpenStack APIs: each
// API is mounted under its path prefix (/identity, /network, ...), which
// the catalog's URLs end in.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// shutdownTimeout bounds how long requests in flight may take at shutdown.
const shutdownTimeout = 5 * time.Second

// Server serves the mounted APIs on one listener. It routes by path
// prefix itself, not through an http.ServeMux: a ServeMux redirects a path
// with "//" or "/../" to its cleaned form, and such paths are valid object
// names in Swift.
type Server struct {
	ln  net.Listener
	srv *http.Server

	mu     sync.RWMutex
	mounts []mount // longest prefix first
}

type mount struct {
	prefix string
	h      http.Handler // for prefix + "/…"
	bare   http.Handler // for prefix itself
}

// New serves on ln, with TLS when tlsConfig is set.
func New(ln net.Listener, tlsConfig *tls.Config, log *slog.Logger) *Server {
	s := &Server{ln: ln}
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s
}

// Mount serves h under prefix ("/identity"); h sees paths without it.
func (s *Server) Mount(prefix string, h http.Handler) {
	prefix = "/" + strings.Trim(prefix, "/")
	// The bare prefix is the API's unversioned root.
	s.add(mount{prefix: prefix, h: http.StripPrefix(prefix, h), bare: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := r.Clone(r.Context())
		r2.URL.Path, r2.URL.RawPath = "/", ""
		h.ServeHTTP(w, r2)
	})})
}

// MountWhole is Mount for a handler that routes (and builds links) on the
// whole path, prefix included.
func (s *Server) MountWhole(prefix string, h http.Handler) {
	s.add(mount{prefix: "/" + strings.Trim(prefix, "/"), h: h, bare: h})
}

func (s *Server) add(m mount) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mounts = append(s.mounts, m)
	slices.SortStableFunc(s.mounts, func(a, b mount) int { return len(b.prefix) - len(a.prefix) })
}

// ServeHTTP hands a request to the API mounted at the longest prefix of
// its path, as it came (not cleaned).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	mounts := s.mounts
	s.mu.RUnlock()
	for _, m := range mounts {
		switch {
		case r.URL.Path == m.prefix:
			m.bare.ServeHTTP(w, r)
			return
		case strings.HasPrefix(r.URL.Path, m.prefix+"/"):
			m.h.ServeHTTP(w, r)
			return
		}
	}
	s.notFound(w, r)
}

// notFound answers a path no API is mounted at.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.mu.RLock()
	var prefixes []string
	for _, m := range s.mounts {
		prefixes = append(prefixes, m.prefix)
	}
	s.mu.RUnlock()
	slices.Sort(prefixes)
	mounted := strings.Join(prefixes, ", ")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write([]byte(`{"error": {"code": 404, "title": "Not Found", "message": "no OpenStack API here; APIs are at: ` + mounted + `"}}` + "\n"))
}

// Serve serves until ctx is done, then lets requests in flight finish
// (bounded); it returns nil after a shutdown.
func (s *Server) Serve(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := s.srv.Shutdown(sctx); err != nil {
				s.srv.Close()
			}
		case <-done:
		}
	}()
	defer close(done)
	var err error
	if s.srv.TLSConfig != nil {
		err = s.srv.ServeTLS(s.ln, "", "")
	} else {
		err = s.srv.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listener of a server that never served.
func (s *Server) Close() error { return s.ln.Close() }
