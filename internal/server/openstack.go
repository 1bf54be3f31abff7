package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/kube"
	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/objectstore/s3"
	"github.com/strata-cloud/strata/internal/objectstore/swift"
	"github.com/strata-cloud/strata/internal/openstack/cinder"
	"github.com/strata-cloud/strata/internal/openstack/glance"
	"github.com/strata-cloud/strata/internal/openstack/keystone"
	"github.com/strata-cloud/strata/internal/openstack/neutron"
	"github.com/strata-cloud/strata/internal/openstack/nova"
	osserver "github.com/strata-cloud/strata/internal/openstack/server"
	"github.com/strata-cloud/strata/internal/pki"
)

// DefaultOpenStackPort is where the OpenStack APIs listen (HTTPS), each
// under its path prefix: Keystone at /identity/v3. 35357 was Keystone's
// own admin port, so no other service expects it.
const DefaultOpenStackPort = 35357

// OpenStackPortKey is the key of kube-public/cluster-info that holds the
// OpenStack APIs' port, for `strata openrc`.
const OpenStackPortKey = "strata-openstack-port"

// OpenStackAdminPasswordFile is where a server keeps the password of
// Keystone's admin user, generated on first start.
func OpenStackAdminPasswordFile(dataDir string) string {
	return filepath.Join(dataDir, "openstack-admin-password")
}

// CAFile is the cluster CA certificate inside a data dir, which every
// Strata serving certificate chains to.
func CAFile(dataDir string) string { return filepath.Join(dataDir, "pki", "ca.crt") }

// DefaultS3Port is where the S3 API listens (HTTPS): S3 clients address
// buckets at the root of their endpoint, so it cannot share the OpenStack
// APIs' port.
const DefaultS3Port = 9443

// listenOpenStack binds the OpenStack APIs' port and the S3 API's (so a
// taken port fails the start at once); nil when the port is 0 (disabled;
// S3 needs the OpenStack APIs' Keystone, so it goes with them).
func listenOpenStack(cfg Config, cluster *pki.Cluster, log *slog.Logger) (*osserver.Server, net.Listener, error) {
	if cfg.OpenStackPort == 0 {
		return nil, nil, nil
	}
	certs := &reloadingCert{certFile: cluster.RegistryCert, keyFile: cluster.RegistryKey}
	if _, err := certs.get(nil); err != nil {
		return nil, nil, err
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
	addr := joinHostPort(cfg.BindAddress, cfg.OpenStackPort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--openstack-port: cannot listen on %s: %w (is another server running? choose another port)", addr, unwrapSyscall(err))
	}
	var s3ln net.Listener
	if cfg.S3Port != 0 {
		addr := joinHostPort(cfg.BindAddress, cfg.S3Port)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("--s3-port: cannot listen on %s: %w (is another server running? choose another port, or 0 to disable S3)", addr, unwrapSyscall(err))
		}
		s3ln = tls.NewListener(l, tlsConfig)
	}
	return osserver.New(ln, tlsConfig, log), s3ln, nil
}

// s3URL is the S3 API's endpoint URL, as openStackURL.
func s3URL(cfg Config, advertise net.IP) string {
	c := cfg
	c.OpenStackPort = cfg.S3Port
	return openStackURL(c, advertise)
}

// openStackURL is the base URL the catalog gives clients: the address the
// listener is bound to, or for a wildcard bind the advertised one.
func openStackURL(cfg Config, advertise net.IP) string {
	host := loopbackFor(cfg.BindAddress)
	if ip := net.ParseIP(cfg.BindAddress); ip != nil && ip.IsUnspecified() && advertise != nil {
		host = advertise.String()
	}
	return "https://" + joinHostPort(host, cfg.OpenStackPort)
}

// runOpenStack bootstraps identity once the CRDs are in (bootstrapped
// closed), mounts the OpenStack APIs and serves them until ctx is done.
// Keystone's tokens then authenticate to kube-apiserver through tokens.
// openStackRun is what runOpenStack serves the APIs with.
type openStackRun struct {
	srv       *osserver.Server
	loopback  *rest.Config
	cfg       Config
	advertise net.IP
	// bootstrapped is closed once the CRDs are in.
	bootstrapped <-chan struct{}
	// tokens is where Keystone's tokens reach kube-apiserver.
	tokens *kube.DeferredTokenAuthenticator
	// images is the registry that holds the images' bytes (Glance's).
	images glance.Store
	// s3 is the S3 API's listener (TLS), nil when disabled.
	s3  net.Listener
	log *slog.Logger
}

func runOpenStack(ctx context.Context, o openStackRun) error {
	srv, loopback, cfg, advertise, bootstrapped, tokens, log := o.srv, o.loopback, o.cfg, o.advertise, o.bootstrapped, o.tokens, o.log
	s3Served := false
	defer func() {
		if o.s3 != nil && !s3Served {
			o.s3.Close()
		}
	}()
	select {
	case <-bootstrapped:
	case <-ctx.Done():
		srv.Close()
		return nil
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := identityv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := networkingv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := computev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := storagev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	// Every OpenStack request is a few API reads: client-go's default
	// rate limit (5 requests/s) would serialise the clients behind it.
	api := rest.CopyConfig(loopback)
	api.QPS, api.Burst = 2000, 4000
	c, err := client.New(api, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	password, err := ensureAdminPassword(OpenStackAdminPasswordFile(cfg.DataDir))
	if err != nil {
		return err
	}
	// The CRDs are created, but may take a moment to be served.
	for {
		err = keystone.Bootstrap(ctx, c, password)
		if err == nil || errors.Is(err, keystone.ErrAdminPasswordDiffers) || ctx.Err() != nil {
			break
		}
		log.Debug("identity bootstrap: retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	switch {
	case ctx.Err() != nil:
		srv.Close()
		return nil
	case errors.Is(err, keystone.ErrAdminPasswordDiffers):
		log.Warn("the OpenStack admin user's password is not the one in "+OpenStackAdminPasswordFile(cfg.DataDir)+" (another server set it first, or it was changed); keeping it", "user", keystone.AdminUser)
	}
	base := openStackURL(cfg, advertise)
	ks, err := keystone.New(ctx, keystone.Config{
		Client: c,
		Catalog: []keystone.Endpoint{
			{Type: "identity", Name: "keystone", URL: base + "/identity/v3"},
			{Type: "network", Name: "neutron", URL: base + "/network"},
			{Type: "image", Name: "glance", URL: base + "/image"},
			{Type: "compute", Name: "nova", URL: base + "/compute/v2.1"},
			{Type: "block-storage", Name: "cinder", URL: base + "/volume/v3/" + keystone.ProjectIDPlaceholder},
			{Type: "volumev3", Name: "cinderv3", URL: base + "/volume/v3/" + keystone.ProjectIDPlaceholder},
			{Type: "object-store", Name: "swift", URL: base + "/object-store/v1/AUTH_" + keystone.ProjectIDPlaceholder},
		},
	})
	if err != nil {
		srv.Close()
		return err
	}
	tokens.Set(ks)
	// Each OpenStack API is one line here; the others authenticate with ks
	// (auth.Middleware(ks, ...)).
	srv.Mount("/identity", ks.Handler())
	srv.MountWhole("/network", neutron.Handler(neutron.Config{Client: c, Authenticator: ks, Projects: projectNames{}, AllocationWait: 10 * time.Second}))
	pods, err := newLauncherPods(api)
	if err != nil {
		srv.Close()
		return err
	}
	srv.MountWhole("/compute", nova.Handler(nova.Config{Client: c, Authenticator: ks, Projects: projectNames{}, Logs: pods.Logs, Exec: pods.Exec}))
	srv.MountWhole("/volume", cinder.Handler(cinder.Config{Client: c, Authenticator: ks, Projects: projectNames{}}))
	glanceInstance := glance.NewInstance()
	srv.MountWhole("/image", glance.Handler(glance.Config{Client: c, Store: o.images, Authenticator: ks, Projects: projectNames{}, Log: log.With("api", "glance"), Instance: glanceInstance}))
	go func() {
		// Images an earlier process of this host was uploading when it stopped.
		if n, err := glance.RecoverUploads(ctx, c, glanceInstance); err != nil && ctx.Err() == nil {
			log.Warn("images left uploading by an earlier run stay so", "err", err)
		} else if n > 0 {
			log.Info("images whose upload an earlier run cut short are queued again", "images", n)
		}
	}()
	objects, err := objectstore.Open(filepath.Join(cfg.DataDir, "objects"))
	if err != nil {
		srv.Close()
		return fmt.Errorf("object store: %w", err)
	}
	defer objects.Close()
	srv.Mount("/object-store", swift.Handler(swift.Config{Store: objects, Authenticator: ks}))
	var s3Done chan error
	if o.s3 != nil {
		s3Served = true
		s3Done = make(chan error, 1)
		// No timeouts but the header's: large uploads take their time.
		s3srv := &http.Server{Handler: s3.Handler(s3.Config{Store: objects, Credentials: ks}), ReadHeaderTimeout: 30 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
		go func() { s3Done <- s3srv.Serve(o.s3) }()
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if s3srv.Shutdown(sctx) != nil {
				s3srv.Close()
			}
			<-s3Done
		}()
		log.Info("S3 API ready", "endpoint", s3URL(cfg, advertise), "credentials", "openstack ec2 credentials create")
	}
	log.Info("OpenStack APIs ready", "auth_url", base+"/identity/v3", "openrc", "strata openrc")
	return srv.Serve(ctx)
}

// ensureAdminPassword reads the admin password file, creating it with a
// random password on first start.
func ensureAdminPassword(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil && len(data) > 0 {
		return string(trimNewline(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read the OpenStack admin password: %w", err)
	}
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	password := base64.RawURLEncoding.EncodeToString(b)
	if err := pki.WriteFileAtomic(path, []byte(password+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the OpenStack admin password: %w", err)
	}
	return password, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// openStackPortValue is the cluster-info value of OpenStackPortKey.
func openStackPortValue(cfg Config) string { return strconv.Itoa(cfg.OpenStackPort) }

// projectNames gives a namespace's project ID as Keystone does: a
// Project's ID is its name, which is its namespace's.
type projectNames struct{}

func (projectNames) ProjectID(_ context.Context, namespace string) (string, error) {
	return namespace, nil
}
