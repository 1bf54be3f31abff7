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
	"strings"
	"sync"
	"time"
)

// shutdownTimeout bounds how long requests in flight may take at shutdown.
const shutdownTimeout = 5 * time.Second

// Server serves the mounted APIs on one listener.
type Server struct {
	ln  net.Listener
	mux *http.ServeMux
	srv *http.Server

	mu       sync.Mutex
	prefixes []string
}

// New serves on ln, with TLS when tlsConfig is set.
func New(ln net.Listener, tlsConfig *tls.Config, log *slog.Logger) *Server {
	s := &Server{ln: ln, mux: http.NewServeMux()}
	s.mux.HandleFunc("/", s.notFound)
	s.srv = &http.Server{
		Handler:           s.mux,
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
	s.mu.Lock()
	s.prefixes = append(s.prefixes, prefix)
	s.mu.Unlock()
	s.mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
	// The bare prefix is the API's unversioned root.
	s.mux.Handle(prefix, http.StripPrefix(prefix, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/"
		h.ServeHTTP(w, r)
	})))
}

// notFound answers a path no API is mounted at.
// MountWhole is Mount for a handler that routes (and builds links) on the
// whole path, prefix included.
func (s *Server) MountWhole(prefix string, h http.Handler) {
	prefix = "/" + strings.Trim(prefix, "/")
	s.mu.Lock()
	s.prefixes = append(s.prefixes, prefix)
	s.mu.Unlock()
	s.mux.Handle(prefix+"/", h)
	s.mux.Handle(prefix, h)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	mounted := strings.Join(s.prefixes, ", ")
	s.mu.Unlock()
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
