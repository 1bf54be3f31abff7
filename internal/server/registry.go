package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/strata-cloud/strata/internal/pki"
	"github.com/strata-cloud/strata/internal/storage/registry"
)

// registryShutdownTimeout bounds how long running pulls and pushes may take
// to finish at shutdown before their connections are closed.
const registryShutdownTimeout = 5 * time.Second

// pushRequirement says who may push, in the registry's refusals.
const pushRequirement = "a client certificate of the cluster CA in group " + pki.MastersGroup +
	" (the admin kubeconfig's, as `strata image push` uses)"

// registryServer serves Strata's OCI registry on its own TLS listener:
// anyone who reaches it may pull (nodes use it as a mirror of every
// registry); pushing needs a cluster-admin client certificate.
type registryServer struct {
	ln   net.Listener
	srv  *http.Server
	once sync.Once
	// reg is the registry served; the image controller stores imports in it.
	reg *registry.Registry
}

// listenRegistry binds the registry's port and prepares its server. Its
// blobs live under dir.
func listenRegistry(cfg Config, dir string, cluster *pki.Cluster, log *slog.Logger) (*registryServer, error) {
	reg, err := registry.New(dir, registry.Options{
		Authorizer: registry.ClientCertPushAuthorizer{Allow: registry.InGroup(pki.MastersGroup), Requirement: pushRequirement},
		Log:        logr.FromSlogHandler(log.Handler()).WithValues("component", "registry"),
	})
	if err != nil {
		return nil, err
	}
	tlsConfig, err := registryTLS(cluster)
	if err != nil {
		return nil, err
	}
	addr := joinHostPort(cfg.BindAddress, cfg.RegistryPort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--registry-port: cannot listen on %s: %w (is another server running? choose another port)", addr, unwrapSyscall(err))
	}
	mux := http.NewServeMux()
	mux.Handle("/v2/", reg)
	return &registryServer{
		ln:  ln,
		reg: reg,
		srv: &http.Server{
			Handler:           mux,
			TLSConfig:         tlsConfig,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}, nil
}

// registryTLS serves the registry certificate (reloaded when renewal
// replaces it) and verifies client certificates of the cluster CA when a
// client offers one.
func registryTLS(cluster *pki.Cluster) (*tls.Config, error) {
	pool := x509.NewCertPool()
	pool.AddCert(cluster.CA.Cert)
	certs := &reloadingCert{certFile: cluster.RegistryCert, keyFile: cluster.RegistryKey}
	if _, err := certs.get(nil); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: certs.get,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      pool,
	}, nil
}

// serve serves until shutdown; it returns nil after shutdown.
func (r *registryServer) serve() error {
	err := r.srv.ServeTLS(r.ln, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// shutdown lets requests in flight finish (bounded), then closes what is
// left. It may be called more than once, and before serve.
func (r *registryServer) shutdown() {
	r.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), registryShutdownTimeout)
		defer cancel()
		if err := r.srv.Shutdown(ctx); err != nil {
			r.srv.Close()
		}
		r.ln.Close() // when serve never ran
	})
}

// reloadingCert loads a certificate pair from disk and loads it again when
// the certificate file changes (renewal rewrites it in place).
type reloadingCert struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	size    int64
}

func (c *reloadingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	st, err := os.Stat(c.certFile)
	if err != nil {
		return nil, fmt.Errorf("registry certificate: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && st.ModTime().Equal(c.modTime) && st.Size() == c.size {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // mid-rewrite: keep serving the old one
		}
		return nil, fmt.Errorf("registry certificate: %w", err)
	}
	c.cert, c.modTime, c.size = &cert, st.ModTime(), st.Size()
	return c.cert, nil
}

// localRegistryURL is the registry's URL for clients on this machine,
// including the server's own node.
func localRegistryURL(cfg Config) string {
	return "https://" + joinHostPort(loopbackFor(cfg.BindAddress), cfg.RegistryPort)
}
