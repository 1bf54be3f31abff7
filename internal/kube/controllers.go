package kube

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	kcmoptions "k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
	sched "k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// ControllerManagerConfig is what Strata decides about kube-controller-manager.
type ControllerManagerConfig struct {
	Kubeconfig             string
	ClusterSigningCertFile string
	ClusterSigningKeyFile  string
	RootCAFile             string
	ServiceAccountKeyFile  string
	ClusterCIDR            string
	ServiceCIDR            string
	NodeMonitorGracePeriod string
	// LeaderElect elects one active controller-manager among several
	// servers. A server on embedded etcd is the only one there can be, and
	// an election it could lose under load would only stop its controllers.
	LeaderElect bool
	Extra       []string
}

// Args renders the kube-controller-manager command line for c.
func (c ControllerManagerConfig) Args() []string {
	args := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		// In-process: its health shows on the apiserver's /readyz and its
		// metrics on the apiserver's /metrics (one registry), so it needs
		// no port of its own.
		"--secure-port=0",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + c.ServiceAccountKeyFile,
		"--root-ca-file=" + c.RootCAFile,
		"--cluster-signing-cert-file=" + c.ClusterSigningCertFile,
		"--cluster-signing-key-file=" + c.ClusterSigningKeyFile,
		"--controllers=*,bootstrapsigner,tokencleaner",
		"--leader-elect=" + strconv.FormatBool(c.LeaderElect),
		// Without this gate a cancelled controller-manager exits the whole
		// process instead of releasing its lease and returning.
		"--feature-gates=ControllerManagerReleaseLeaderElectionLockOnExit=true",
		"--profiling=false",
	}
	if c.ClusterCIDR != "" {
		args = append(args, "--allocate-node-cidrs=true", "--cluster-cidr="+c.ClusterCIDR)
	}
	if c.ServiceCIDR != "" {
		args = append(args, "--service-cluster-ip-range="+c.ServiceCIDR)
	}
	if c.NodeMonitorGracePeriod != "" {
		args = append(args, "--node-monitor-grace-period="+c.NodeMonitorGracePeriod)
	}
	return append(args, c.Extra...)
}

// RunControllerManager runs kube-controller-manager until ctx is done.
// built, if not nil, is called once its controllers exist: the first
// list or watch of its shared informers, which upstream starts only after
// it has constructed every controller (and Init its volume plugins).
func RunControllerManager(ctx context.Context, args []string, built func()) error {
	s, err := kcmoptions.NewKubeControllerManagerOptions()
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	fss := s.Flags(kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases())
	s.ParsedFlags = &fss
	if err := parseInto("kube-controller-manager", fss, args); err != nil {
		return err
	}
	if err := s.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	c, err := s.Config(ctx, kcm.KnownControllers(), kcm.ControllersDisabledByDefault(), kcm.ControllerAliases())
	if err != nil {
		return fmt.Errorf("kube-controller-manager: %w", err)
	}
	if built != nil {
		var once sync.Once
		c.Kubeconfig.Wrap(func(rt http.RoundTripper) http.RoundTripper {
			return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
				if req.URL.Path != "/healthz" && fromInformers(req.UserAgent()) {
					once.Do(built)
				}
				return rt.RoundTrip(req)
			})
		})
	}
	return ignoreCancel(ctx, kcm.Run(ctx, c.Complete()))
}

// fromInformers tells the controller-manager's informer clients (named
// "shared-informers" and "metadata-informers" in their user agents) from
// its other clients.
func fromInformers(userAgent string) bool {
	return strings.HasSuffix(userAgent, "/shared-informers") || strings.HasSuffix(userAgent, "/metadata-informers")
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// SchedulerConfig is what Strata decides about kube-scheduler.
type SchedulerConfig struct {
	Kubeconfig string
	// LeaderElect: as ControllerManagerConfig.LeaderElect.
	LeaderElect bool
	Extra       []string
}

// Args renders the kube-scheduler command line for c.
func (c SchedulerConfig) Args() []string {
	return append([]string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--secure-port=0",
		"--leader-elect=" + strconv.FormatBool(c.LeaderElect),
		"--profiling=false",
	}, c.Extra...)
}

// RunScheduler runs kube-scheduler until ctx is done.
func RunScheduler(ctx context.Context, args []string) error {
	opts := schedoptions.NewOptions()
	if err := parseInto("kube-scheduler", *opts.Flags, args); err != nil {
		return err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	name, err := cache.NewInformerName("kube-scheduler")
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	opts.InformerName = name
	cc, scheduler, err := sched.Setup(ctx, opts)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	// Upstream's Run exits the process when its leader election stops, even
	// on a requested shutdown. Strata runs the same election itself, so that
	// cancelling ctx returns and a lost lease is an error for the server's
	// supervisor rather than an os.Exit.
	election := cc.LeaderElection
	cc.LeaderElection = nil
	cc.ComponentConfig.LeaderElection.LeaderElect = false
	if election == nil {
		return ignoreCancel(ctx, sched.Run(ctx, cc, scheduler))
	}
	leadCtx, stopLeading := context.WithCancel(ctx)
	defer stopLeading()
	var runErr error
	election.ReleaseOnCancel = true
	election.Callbacks = leaderelection.LeaderCallbacks{
		OnStartedLeading: func(ctx context.Context) { runErr = sched.Run(ctx, cc, scheduler) },
		OnStoppedLeading: stopLeading,
	}
	elector, err := leaderelection.NewLeaderElector(*election)
	if err != nil {
		return fmt.Errorf("kube-scheduler: %w", err)
	}
	elector.Run(leadCtx)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("kube-scheduler: lost its leader lease (%v)", runErr)
}

// ignoreCancel drops the error a component returns because ctx ended.
func ignoreCancel(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}
