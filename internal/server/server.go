// Package server wires `strata server`: the data directory, the PKI, etcd
// (embedded or external), the upstream control plane and Strata's own
// control-plane parts, with one lifecycle that starts them in order and
// stops them in reverse.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-cloud/strata/internal/agent"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/kube"
	"github.com/strata-cloud/strata/internal/network/dns"
	"github.com/strata-cloud/strata/internal/network/lb"
	"github.com/strata-cloud/strata/internal/pki"
	"github.com/strata-cloud/strata/internal/storage/volume"
	"github.com/strata-cloud/strata/internal/vm/launcherimage"
)

// Config is everything `strata server` is told.
type Config struct {
	DataDir      string
	BindAddress  string
	APIPort      int
	DisableAgent bool

	// RegistryPort is where the OCI registry listens (TLS, on
	// BindAddress); every node's containerd uses it as a mirror.
	RegistryPort int

	// OpenStackPort is where the OpenStack APIs listen (TLS, on
	// BindAddress; Keystone at /identity/v3); 0 disables them.
	OpenStackPort int

	// S3Port is where the S3 API listens (TLS, on BindAddress); 0
	// disables it, as does an OpenStackPort of 0.
	S3Port int

	// EtcdServers selects an external etcd cluster; empty means embedded.
	EtcdServers                           []string
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	EtcdClientPort, EtcdPeerPort          int

	ClusterCIDR string
	ServiceCIDR string

	// NodeName names this server's node; empty means the hostname.
	NodeName string

	// NodeMonitorGracePeriod shortens node failure detection (tests).
	NodeMonitorGracePeriod time.Duration
	// PodEvictionTimeout is how long pods stay bound to a NotReady or
	// unreachable node (the default tolerations the apiserver adds); zero
	// keeps upstream's five minutes.
	PodEvictionTimeout time.Duration
	// VMDiskDir is where nodes keep VMs' writable disks (empty: the
	// controller's default, /var/lib/strata/vm-disks).
	VMDiskDir string
	// LBPool is the external address pool of LoadBalancer Services
	// (lb.ParsePool); empty leaves them pending, for another provider.
	LBPool string

	Version   string
	Verbosity int
	Logger    *slog.Logger
}

// Defaults for Config.
const (
	DefaultAPIPort        = 6443
	DefaultRegistryPort   = 5000
	DefaultEtcdClientPort = 2379
	DefaultEtcdPeerPort   = 2380
	DefaultClusterCIDR    = "10.42.0.0/16"
	DefaultServiceCIDR    = "10.43.0.0/16"
	DefaultNodePortRange  = "30000-32767"
	shutdownTimeout       = 30 * time.Second
	apiShutdownTimeout    = 5 * time.Second
	renewInterval         = 12 * time.Hour
	// kcmBuildWait bounds how long a server's kubelet waits for an
	// elected controller-manager that may never lead.
	kcmBuildWait = time.Minute
)

// AdminKubeconfig is the admin kubeconfig's path inside a data dir.
func AdminKubeconfig(dataDir string) string { return dataDir + "/admin.kubeconfig" }

// Validate checks c before anything touches the disk or the network.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	if c.APIPort < 1 || c.APIPort > 65535 {
		return fmt.Errorf("--api-port: %d is not a port (1-65535)", c.APIPort)
	}
	if c.RegistryPort < 1 || c.RegistryPort > 65535 {
		return fmt.Errorf("--registry-port: %d is not a port (1-65535)", c.RegistryPort)
	}
	if c.RegistryPort == c.APIPort {
		return fmt.Errorf("--registry-port: %d is also --api-port; choose another port", c.RegistryPort)
	}
	if c.OpenStackPort < 0 || c.OpenStackPort > 65535 {
		return fmt.Errorf("--openstack-port: %d is not a port (1-65535, or 0 to disable)", c.OpenStackPort)
	}
	if c.OpenStackPort != 0 && (c.OpenStackPort == c.APIPort || c.OpenStackPort == c.RegistryPort) {
		return fmt.Errorf("--openstack-port: %d is also --api-port or --registry-port; choose another port", c.OpenStackPort)
	}
	if c.S3Port < 0 || c.S3Port > 65535 {
		return fmt.Errorf("--s3-port: %d is not a port (1-65535, or 0 to disable)", c.S3Port)
	}
	if c.S3Port != 0 && (c.S3Port == c.APIPort || c.S3Port == c.RegistryPort || c.S3Port == c.OpenStackPort) {
		return fmt.Errorf("--s3-port: %d is also --api-port, --registry-port or --openstack-port; choose another port", c.S3Port)
	}
	if net.ParseIP(c.BindAddress) == nil {
		return fmt.Errorf("--bind-address: %q is not an IP address", c.BindAddress)
	}
	if _, err := lb.ParsePool(c.LBPool); err != nil {
		return fmt.Errorf("--lb-pool: %w", err)
	}
	if c.NodeMonitorGracePeriod < 0 || c.PodEvictionTimeout < 0 {
		return fmt.Errorf("--node-monitor-grace-period and --pod-eviction-timeout must not be negative")
	}
	for _, cidr := range []struct{ flag, value string }{{"--cluster-cidr", c.ClusterCIDR}, {"--service-cidr", c.ServiceCIDR}} {
		if _, _, err := net.ParseCIDR(cidr.value); err != nil {
			return fmt.Errorf("%s: %q is not a CIDR", cidr.flag, cidr.value)
		}
	}
	if len(c.EtcdServers) == 0 {
		for _, p := range []struct {
			flag string
			port int
		}{{"--etcd-client-port", c.EtcdClientPort}, {"--etcd-peer-port", c.EtcdPeerPort}} {
			if p.port < 1 || p.port > 65535 {
				return fmt.Errorf("%s: %d is not a port (1-65535)", p.flag, p.port)
			}
		}
	} else {
		for _, s := range c.EtcdServers {
			if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				return fmt.Errorf("--etcd-servers: %q is not an http(s) URL", s)
			}
		}
		for _, f := range []struct{ flag, path string }{{"--etcd-cafile", c.EtcdCAFile}, {"--etcd-certfile", c.EtcdCertFile}, {"--etcd-keyfile", c.EtcdKeyFile}} {
			if f.path == "" {
				continue
			}
			if _, err := os.Stat(f.path); err != nil {
				return fmt.Errorf("%s: %w", f.flag, err)
			}
		}
	}
	return nil
}

// Run runs the server until ctx is done or a component fails, then stops
// everything in reverse order. It returns nil after a requested shutdown,
// including one that arrives while the server is still starting.
func Run(ctx context.Context, cfg Config) error {
	err := run(ctx, cfg)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		cfg.Logger.Info("stopped while starting")
		return nil
	}
	return err
}

func run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if err := cfg.Validate(); err != nil {
		return err
	}
	started := time.Now()
	logging, err := kube.ConfigureLogging(log.Handler(), cfg.Verbosity)
	if err != nil {
		return err
	}
	dir, err := openDataDir(cfg.DataDir, cfg.Version)
	if err != nil {
		return err
	}
	defer dir.close()
	if err := checkPortsFree(cfg); err != nil {
		return err
	}

	hosts, advertise := apiHosts(cfg)
	cluster, issued, err := pki.EnsureCluster(dir.sub("pki"), hosts, time.Now())
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if len(issued) > 0 && !dir.fresh {
		log.Info("renewed certificates", "certs", issued)
	}
	creds, err := writeClientCredentials(dir, cluster, cfg)
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	var agentCfg agent.Config
	if !cfg.DisableAgent {
		if agentCfg, err = localAgent(dir, cluster, cfg, advertise); err != nil {
			return err
		}
	}
	// The registry's port is bound before anything starts, so a taken
	// port fails the start at once; it serves once the rest is started.
	reg, err := listenRegistry(cfg, dir.sub("registry"), cluster, log)
	if err != nil {
		return err
	}
	defer reg.shutdown()
	openstack, s3ln, err := listenOpenStack(cfg, cluster, log.With("component", "openstack"))
	if err != nil {
		return err
	}

	// etcd
	etcdServers, etcdFiles := cfg.EtcdServers, etcdTLS{CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile}
	var etcd *embeddedEtcd
	if len(etcdServers) == 0 {
		etcd, err = startEtcd(ctx, dir.sub("etcd"), "strata", cfg.EtcdClientPort, cfg.EtcdPeerPort,
			etcdTLS{CAFile: cluster.EtcdCA.CertPath, CertFile: cluster.EtcdServerCert, KeyFile: cluster.EtcdServerKey},
			etcdFiles, cfg.Verbosity > 1)
		if err != nil {
			return err
		}
		defer func() {
			etcd.close()
			log.Info("etcd stopped")
		}()
		etcdServers = []string{etcd.clientURL}
		etcdFiles = etcdTLS{CAFile: cluster.EtcdCA.CertPath, CertFile: cluster.EtcdClientCert, KeyFile: cluster.EtcdClientKey}
		log.Debug("etcd ready", "url", etcd.clientURL, "elapsed", time.Since(started))
	} else if err := checkEtcd(ctx, etcdServers, etcdFiles); err != nil {
		return fmt.Errorf("--etcd-servers: %w", err)
	}

	status := newComponentStatus()
	apiArgs := kube.APIServerConfig{
		BindAddress:           cfg.BindAddress,
		Port:                  cfg.APIPort,
		AdvertiseAddress:      advertise,
		ServiceCIDR:           cfg.ServiceCIDR,
		NodePortRange:         DefaultNodePortRange,
		EtcdServers:           etcdServers,
		EtcdCAFile:            etcdFiles.CAFile,
		EtcdCertFile:          etcdFiles.CertFile,
		EtcdKeyFile:           etcdFiles.KeyFile,
		ClientCAFile:          cluster.CA.CertPath,
		ServingCertFile:       cluster.APIServerCert,
		ServingKeyFile:        cluster.APIServerKey,
		ServiceAccountKeyFile: cluster.ServiceAccountKey,
		ServiceAccountPub:     cluster.ServiceAccountPub,
		KubeletClientCert:     cluster.KubeletClientCert,
		KubeletClientKey:      cluster.KubeletClientKey,
		FrontProxyCAFile:      cluster.FrontProxyCA.CertPath,
		FrontProxyCert:        cluster.FrontProxyCert,
		FrontProxyKey:         cluster.FrontProxyKey,
		Extra:                 evictionArgs(cfg.PodEvictionTimeout),
	}.Args()
	// With embedded etcd this server is the cluster's only one: no leader
	// elections, which a loaded machine could lose and so stop its own
	// controllers. Servers sharing an external etcd elect leaders.
	electLeaders := etcd == nil
	kcmArgs := kube.ControllerManagerConfig{
		LeaderElect:            electLeaders,
		Kubeconfig:             creds.controllerManager,
		ClusterSigningCertFile: cluster.CA.CertPath,
		ClusterSigningKeyFile:  cluster.CA.KeyPath,
		RootCAFile:             cluster.CA.CertPath,
		ServiceAccountKeyFile:  cluster.ServiceAccountKey,
		ClusterCIDR:            cfg.ClusterCIDR,
		ServiceCIDR:            cfg.ServiceCIDR,
		NodeMonitorGracePeriod: durationFlag(cfg.NodeMonitorGracePeriod),
	}.Args()
	schedArgs := kube.SchedulerConfig{Kubeconfig: creds.scheduler, LeaderElect: electLeaders}.Args()

	// Components run under their own contexts so that shutdown can stop
	// them in order: controllers first, the apiserver next, etcd last.
	var wg sync.WaitGroup
	// Room for every component's failure, so that no reporter blocks.
	failed := make(chan error, 8)
	run := func(name string, ctx context.Context, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn(ctx)
			status.exited(name, err)
			if ctx.Err() == nil {
				if err == nil {
					err = errors.New("exited")
				}
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	var regWG sync.WaitGroup
	regWG.Go(func() {
		status.started("strata-registry")
		err := reg.serve()
		status.exited("strata-registry", err)
		if err != nil {
			failed <- fmt.Errorf("registry: %w", err)
		}
	})
	defer func() {
		reg.shutdown()
		regWG.Wait()
	}()
	// Keystone's tokens are Kubernetes tokens too, once Keystone runs.
	keystoneTokens := &kube.DeferredTokenAuthenticator{}
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAPI()
	ctlCtx, stopControllers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopControllers()
	var apiWG sync.WaitGroup
	apiWG.Add(1)
	go func() {
		defer apiWG.Done()
		err := kube.RunAPIServer(apiCtx, apiArgs, keystoneTokens, status.checks()...)
		if apiCtx.Err() == nil {
			if err == nil {
				err = errors.New("exited")
			}
			failed <- fmt.Errorf("kube-apiserver: %w", err)
		}
	}()

	loopback, err := clientcmd.BuildConfigFromFlags("", creds.strata)
	if err != nil {
		return err
	}
	client := kubernetes.NewForConfigOrDie(loopback)
	if err := waitHealthy(ctx, client, failed); err != nil {
		stopAPI()
		waitTimeout(&apiWG, shutdownTimeout)
		return err
	}
	log.Debug("kube-apiserver healthy", "elapsed", time.Since(started))
	if etcd != nil {
		if err := releaseStaleLeases(ctx, client); err != nil {
			log.Warn("controllers may wait for an old leader lease to expire", "err", err)
		}
	}
	// The server's own kubelet starts after the controller-manager's
	// volume plugins (see agent.Config.KubeletAfter). An elected
	// controller-manager builds them only once it leads, which another
	// server may do for good: its kubelet waits a bounded time.
	kcmBuilt := make(chan struct{})
	closeKCMBuilt := sync.OnceFunc(func() { close(kcmBuilt) })
	agentCfg.KubeletAfter = kcmBuilt
	if electLeaders {
		time.AfterFunc(kcmBuildWait, closeKCMBuilt)
	}
	run("kube-controller-manager", ctlCtx, func(ctx context.Context) error {
		status.started("kube-controller-manager")
		return kube.RunControllerManager(ctx, kcmArgs, closeKCMBuilt)
	})
	run("kube-scheduler", ctlCtx, func(ctx context.Context) error {
		status.started("kube-scheduler")
		return kube.RunScheduler(ctx, schedArgs)
	})
	bootstrapped := make(chan struct{})
	run("strata-bootstrap", ctlCtx, func(ctx context.Context) error {
		if err := bootstrap(ctx, loopback, cluster, cfg, advertise); err != nil {
			return err
		}
		status.started("strata-bootstrap")
		close(bootstrapped)
		<-ctx.Done()
		return nil
	})
	if ip, ok := netip.AddrFromSlice(clusterDNS(cfg.ServiceCIDR)); ok {
		run("cluster-dns-service", ctlCtx, func(ctx context.Context) error {
			return dns.RunClusterService(ctx, client, ip.Unmap(), log.With("component", "dns"))
		})
	}
	run("strata-controllers", ctlCtx, func(ctx context.Context) error {
		select { // their CRDs first
		case <-bootstrapped:
		case <-ctx.Done():
			return nil
		}
		return runStrataControllers(ctx, loopback, log.With("component", "controllers"), electLeaders, virtualmachine.LauncherOptions{Image: LauncherImage, DiskDir: cfg.VMDiskDir, VolumeDir: volume.NodeDir}, reg.reg, cfg.LBPool)
	})
	if openstack != nil {
		run("strata-openstack", ctlCtx, func(ctx context.Context) error {
			status.started("strata-openstack")
			return runOpenStack(ctx, openStackRun{srv: openstack, loopback: loopback, cfg: cfg, advertise: advertise, bootstrapped: bootstrapped,
				tokens: keystoneTokens, images: reg.reg, s3: s3ln, log: log.With("component", "openstack")})
		})
	}
	if !cfg.DisableAgent {
		run("strata-agent", ctlCtx, func(ctx context.Context) error { return agent.Run(ctx, agentCfg) })
	}
	run("cert-renewal", ctlCtx, func(ctx context.Context) error {
		return renewLoop(ctx, log, dir, hosts, cfg)
	})

	var runErr error
	if err := waitReady(ctx, client, failed); err != nil {
		runErr = err
	} else {
		log.Info("Strata server is ready",
			"elapsed", time.Since(started).Round(10*time.Millisecond),
			"kubeconfig", creds.admin,
			"use", "export KUBECONFIG="+creds.admin+"; kubectl get nodes  (or: strata kubectl get nodes)")
		select {
		case <-ctx.Done():
		case runErr = <-failed:
		}
	}
	if runErr != nil {
		log.Error("stopping after failure", "err", runErr)
	} else {
		log.Info("shutting down")
	}
	logging.Quiet()
	stopControllers()
	if !waitTimeout(&wg, shutdownTimeout) {
		log.Warn("controllers did not stop in time", "timeout", shutdownTimeout)
	}
	// The node has stopped pulling; let pushes in flight finish.
	reg.shutdown()
	stopAPI()
	// The apiserver drains its connections, but the kubelet's clients
	// outlive the kubelet's Run and keep some open; past a short bound
	// etcd is closed anyway (what is in flight fails; nothing acknowledged
	// is lost).
	if !waitTimeout(&apiWG, apiShutdownTimeout) {
		log.Debug("kube-apiserver still draining connections; closing etcd", "after", apiShutdownTimeout)
	}
	return runErr
}

// clientCredentials are the kubeconfigs written for local clients.
type clientCredentials struct {
	admin, strata, controllerManager, scheduler string
}

// writeClientCredentials issues (or renews) the client certificates of the
// control-plane components and the admin, and writes their kubeconfigs.
func writeClientCredentials(dir *dataDir, cluster *pki.Cluster, cfg Config) (clientCredentials, error) {
	server := localServerURL(cfg)
	creds := clientCredentials{
		admin:             AdminKubeconfig(dir.path),
		strata:            dir.sub("kubeconfig", "strata.kubeconfig"),
		controllerManager: dir.sub("kubeconfig", "controller-manager.kubeconfig"),
		scheduler:         dir.sub("kubeconfig", "scheduler.kubeconfig"),
	}
	for _, c := range []struct {
		name, user string
		groups     []string
		path       string
	}{
		{"admin", pki.AdminUser, []string{pki.MastersGroup}, creds.admin},
		{"strata", pki.StrataUser, []string{pki.MastersGroup}, creds.strata},
		{"controller-manager", pki.ControllerManagerUser, nil, creds.controllerManager},
		{"scheduler", pki.SchedulerUser, nil, creds.scheduler},
	} {
		cert, key, _, err := cluster.EnsureClientCert(c.name, c.user, c.groups, time.Now())
		if err != nil {
			return creds, err
		}
		if err := cluster.WriteKubeconfig(c.path, server, "strata", cert, key); err != nil {
			return creds, err
		}
	}
	return creds, nil
}

// loopbackFor is the address local clients use to reach a server bound to
// bind: loopback for a wildcard bind, the address itself otherwise.
func loopbackFor(bind string) string {
	ip := net.ParseIP(bind)
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() != nil:
		return "127.0.0.1"
	case ip.IsUnspecified():
		return "::1"
	}
	return bind
}

// checkPortsFree fails fast, naming the port, if something already listens
// where the server is about to.
func checkPortsFree(cfg Config) error {
	ports := []struct {
		flag, addr string
	}{
		{"--api-port", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.APIPort))},
		{"--registry-port", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.RegistryPort))},
	}
	if cfg.OpenStackPort != 0 {
		ports = append(ports, struct{ flag, addr string }{"--openstack-port", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.OpenStackPort))})
		if cfg.S3Port != 0 {
			ports = append(ports, struct{ flag, addr string }{"--s3-port", net.JoinHostPort(cfg.BindAddress, strconv.Itoa(cfg.S3Port))})
		}
	}
	if len(cfg.EtcdServers) == 0 {
		ports = append(ports,
			struct{ flag, addr string }{"--etcd-client-port", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.EtcdClientPort))},
			struct{ flag, addr string }{"--etcd-peer-port", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.EtcdPeerPort))})
	}
	for _, p := range ports {
		l, err := net.Listen("tcp", p.addr)
		if err != nil {
			return fmt.Errorf("%s: cannot listen on %s: %w (is another server running? choose another port)", p.flag, p.addr, unwrapSyscall(err))
		}
		l.Close()
	}
	return nil
}

func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		var sys *os.SyscallError
		if errors.As(op.Err, &sys) {
			return sys.Err
		}
		return op.Err
	}
	return err
}

// waitHealthy waits until the apiserver answers /healthz.
func waitHealthy(ctx context.Context, client kubernetes.Interface, failed <-chan error) error {
	return poll(ctx, failed, 2*time.Minute, "kube-apiserver /healthz", func(ctx context.Context) bool {
		return client.Discovery().RESTClient().Get().AbsPath("/healthz").Do(ctx).Error() == nil
	})
}

// waitReady waits until /readyz passes, which includes Strata's own checks.
func waitReady(ctx context.Context, client kubernetes.Interface, failed <-chan error) error {
	return poll(ctx, failed, 3*time.Minute, "/readyz", func(ctx context.Context) bool {
		return client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error() == nil
	})
}

func poll(ctx context.Context, failed <-chan error, timeout time.Duration, what string, ok func(context.Context) bool) error {
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		done := ok(reqCtx)
		cancel()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // shutdown requested while starting: not a failure
		case err := <-failed:
			return err
		case <-deadline:
			return fmt.Errorf("%s not passing after %s", what, timeout)
		case <-tick.C:
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func durationFlag(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// componentStatus tracks in-process components for /readyz.
type componentStatus struct {
	mu    sync.Mutex
	state map[string]string // "" = not started, "ok", or the exit error
}

func newComponentStatus() *componentStatus {
	return &componentStatus{state: map[string]string{
		"kube-controller-manager": "",
		"kube-scheduler":          "",
		"strata-bootstrap":        "",
		"strata-registry":         "",
	}}
}

func (s *componentStatus) started(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state[name] = "ok"
}

func (s *componentStatus) exited(name string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, tracked := s.state[name]; !tracked {
		return
	}
	if err == nil {
		err = errors.New("stopped")
	}
	s.state[name] = err.Error()
}

// checks returns one readyz check per tracked component.
func (s *componentStatus) checks() []healthz.HealthChecker {
	var out []healthz.HealthChecker
	for name := range s.state {
		out = append(out, healthz.NamedCheck(name, func(*http.Request) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			switch st := s.state[name]; st {
			case "ok":
				return nil
			case "":
				return errors.New("not started yet")
			default:
				return errors.New(st)
			}
		}))
	}
	return out
}

// evictionArgs set the tolerations that DefaultTolerationSeconds admission
// gives every pod for not-ready and unreachable nodes.
func evictionArgs(d time.Duration) []string {
	if d <= 0 {
		return nil
	}
	secs := strconv.Itoa(int(max(d.Round(time.Second), time.Second) / time.Second))
	return []string{"--default-not-ready-toleration-seconds=" + secs, "--default-unreachable-toleration-seconds=" + secs}
}

// LauncherImage is the image of VM launcher pods, built on every node.
const LauncherImage = launcherimage.CurrentRef
