// Package cli is Strata's command line: it is the only place that reads
// os.Args and the environment, turns them into configuration, and hands that
// to the packages that do the work.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"

	"github.com/strata-cloud/strata/internal/agent"
	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/kube"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/pki"
	"github.com/strata-cloud/strata/internal/server"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"github.com/strata-cloud/strata/internal/version"
	"github.com/strata-cloud/strata/internal/vm/launcher"
)

// DefaultDataDir is where a server keeps its state unless told otherwise.
const DefaultDataDir = "/var/lib/strata"

// dataDirEnv overrides DefaultDataDir for commands that take no flags of
// their own (`strata kubectl`).
const dataDirEnv = "STRATA_DATA_DIR"

// Main runs the command line and returns the process exit code.
func Main(args []string) int {
	// Multi-call modes: the same binary is containerd, its runc shim and
	// (later) the CNI plugin. Each is selected before flags are parsed, and
	// each hands its arguments to upstream code untouched.
	if code, ok := cni.MultiCall(args); ok {
		// containerd runs the CNI plugins through symlinks of those names
		// when the build embeds no separate plugin binary.
		return code
	}
	switch {
	case len(args) > 1 && args[1] == "containerd":
		if err := containerd.RunDaemon(context.Background(), args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "containerd:", err)
			return 1
		}
		return 0
	case os.Getenv(containerd.ShimEnv) != "":
		containerd.RunShim(context.Background())
		return 0
	case len(args) > 1 && args[1] == "launcher":
		// The VM launcher, in launcher images of builds that embed no
		// strata-launcher (see internal/agent.LauncherImage).
		return launcher.Main(args[2:], os.Stdout, os.Stderr)
	case filepath.Base(args[0]) == "strata-launcher":
		// The same, run by its name in such an image (`kubectl exec
		// vm-NAME -- strata-launcher qmp ...`).
		return launcher.Main(args[1:], os.Stdout, os.Stderr)
	case len(args) > 1 && args[1] == "kubectl":
		// `strata kubectl` hands every argument to kubectl untouched.
		return runKubectl(args[2:])
	}
	root := newRoot()
	root.SetArgs(args[1:])
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "strata: %v\n", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Strata: Kubernetes and OpenStack APIs over one cloud, in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServerCmd(), newAgentCmd(), newImageCmd(), newKeypairCmd(), newVMCmd(), newVMPoolCmd(), newConsoleCmd(), newKubectlStub(), newKubeconfigCmd(), newVersionCmd(), newTokenCmd(), newOpenrcCmd())
	return root
}

func defaultDataDir() string {
	if d := os.Getenv(dataDirEnv); d != "" {
		return d
	}
	return DefaultDataDir
}

// newLogger returns Strata's structured logger: text on stderr, quiet by
// default (info for Strata, errors only for upstream components).
func newLogger(level string, out io.Writer) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", level)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: l, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.LevelKey && a.Value.Any() == kube.LevelFatal {
			a.Value = slog.StringValue("FATAL")
		}
		return a
	}})), nil
}

func newServerCmd() *cobra.Command {
	cfg := server.Config{}
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Strata control plane (etcd, Kubernetes control plane, Strata controllers) and, unless disabled, a node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, os.Stderr)
			if err != nil {
				return err
			}
			cfg.Logger = log
			cfg.Version = version.Version
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			go func() {
				// After the first signal, a second one kills the process.
				<-ctx.Done()
				stop()
			}()
			return server.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", DefaultDataDir, "directory for all state: etcd data, certificates, kubeconfigs")
	f.StringVar(&cfg.BindAddress, "bind-address", "0.0.0.0", "address the Kubernetes API listens on")
	f.IntVar(&cfg.APIPort, "api-port", server.DefaultAPIPort, "port of the Kubernetes API (HTTPS)")
	f.IntVar(&cfg.RegistryPort, "registry-port", server.DefaultRegistryPort, "port of the OCI image registry (HTTPS) that every node pulls through (push to it with: strata image push)")
	f.IntVar(&cfg.OpenStackPort, "openstack-port", server.DefaultOpenStackPort, "port of the OpenStack APIs (HTTPS; Keystone at /identity/v3, see: strata openrc); 0 disables them")
	f.IntVar(&cfg.S3Port, "s3-port", server.DefaultS3Port, "port of the S3 API (HTTPS; credentials: openstack ec2 credentials create); 0 disables it")
	f.BoolVar(&cfg.DisableAgent, "disable-agent", false, "run only the control plane, no node agent")
	f.StringVar(&cfg.NodeName, "node-name", "", "name of this server's node (default: the hostname)")
	f.StringSliceVar(&cfg.EtcdServers, "etcd-servers", nil, "external etcd cluster URLs (comma-separated); empty runs embedded etcd")
	f.StringVar(&cfg.EtcdCAFile, "etcd-cafile", "", "CA bundle to verify the external etcd cluster")
	f.StringVar(&cfg.EtcdCertFile, "etcd-certfile", "", "client certificate for the external etcd cluster")
	f.StringVar(&cfg.EtcdKeyFile, "etcd-keyfile", "", "client key for the external etcd cluster")
	f.IntVar(&cfg.EtcdClientPort, "etcd-client-port", server.DefaultEtcdClientPort, "loopback port of the embedded etcd's client API")
	f.IntVar(&cfg.EtcdPeerPort, "etcd-peer-port", server.DefaultEtcdPeerPort, "loopback port of the embedded etcd's peer API")
	f.StringVar(&cfg.ClusterCIDR, "cluster-cidr", server.DefaultClusterCIDR, "pod network range")
	f.StringVar(&cfg.ServiceCIDR, "service-cidr", server.DefaultServiceCIDR, "Service ClusterIP range")
	f.DurationVar(&cfg.NodeMonitorGracePeriod, "node-monitor-grace-period", 0, "how long a silent node stays Ready (0 = upstream default, 50s)")
	f.StringVar(&cfg.VMDiskDir, "vm-disk-dir", "", "directory on every node for VMs' disks, which outlive their launcher pods (default /var/lib/strata/vm-disks)")
	f.StringVar(&cfg.LBPool, "lb-pool", "", "external IPv4 addresses for LoadBalancer Services, announced by ARP from a node: CIDRs or FIRST-LAST ranges, comma-separated (empty: no load balancers)")
	f.DurationVar(&cfg.PodEvictionTimeout, "pod-eviction-timeout", 0, "how long pods stay on a NotReady or unreachable node before they are evicted and recreated elsewhere (0 = upstream default, 5m)")
	f.StringVar(&logLevel, "log-level", "info", "Strata log level: debug, info, warn, error")
	f.IntVarP(&cfg.Verbosity, "v", "v", 0, "upstream component verbosity: 0 shows only their errors, 1 their info logs, 2+ more detail")
	return cmd
}

// newKubectlStub exists so that `strata --help` lists kubectl; Main
// dispatches `strata kubectl` before cobra parses anything.
func newKubectlStub() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl",
		Short:              "Run the bundled, version-matched kubectl (uses the local admin kubeconfig by default)",
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if code := runKubectl(args); code != 0 {
				return fmt.Errorf("kubectl exited with %d", code)
			}
			return nil
		},
	}
}

// runKubectl runs upstream kubectl in-process. Without KUBECONFIG or
// --kubeconfig it uses the local server's admin kubeconfig, like k3s.
func runKubectl(args []string) int {
	if os.Getenv("KUBECONFIG") == "" && !hasFlag(args, "--kubeconfig") {
		os.Setenv("KUBECONFIG", server.AdminKubeconfig(defaultDataDir()))
	}
	// kubectl reads os.Args for its name and plugin lookup.
	os.Args = append([]string{"kubectl"}, args...)
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(cmd); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

func newKubeconfigCmd() *cobra.Command {
	var dataDir, serverURL string
	cmd := &cobra.Command{
		Use:   "kubeconfig",
		Short: "Print the admin kubeconfig of the local server (to copy to another machine)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := server.AdminKubeconfig(dataDir)
			cfg, err := clientcmd.LoadFromFile(path)
			if err != nil {
				return fmt.Errorf("%s: %w (is `strata server --data-dir %s` initialised?)", path, err, dataDir)
			}
			if serverURL != "" {
				for _, c := range cfg.Clusters {
					c.Server = serverURL
				}
			}
			data, err := clientcmd.Write(*cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(data)
			return err
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory")
	cmd.Flags().StringVar(&serverURL, "server", "", "API server URL to write instead of the local one (e.g. https://HOST:6443)")
	return cmd
}

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the Strata and embedded Kubernetes versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := version.Get()
			switch output {
			case "":
				fmt.Fprintf(cmd.OutOrStdout(), "Strata %s (commit %s)\nKubernetes %s\nGo %s %s\n", v.Strata, v.GitCommit, v.Kubernetes, v.Go, v.Platform)
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			default:
				return fmt.Errorf("--output: %q is not one of: json", output)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func newTokenCmd() *cobra.Command {
	token := &cobra.Command{Use: "token", Short: "Manage join tokens for new nodes"}
	var dataDir, description string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a bootstrap token that lets a node join (printed on stdout)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl < 0 {
				return fmt.Errorf("--ttl: %s is negative (use 0 for a token that never expires)", ttl)
			}
			path := server.AdminKubeconfig(dataDir)
			restConfig, err := clientcmd.BuildConfigFromFlags("", path)
			if err != nil {
				return fmt.Errorf("%s: %w (is `strata server --data-dir %s` initialised?)", path, err, dataDir)
			}
			client, err := kubernetes.NewForConfig(restConfig)
			if err != nil {
				return err
			}
			t, err := pki.NewJoinToken()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			secret := pki.BootstrapTokenSecret(t, ttl, description, time.Now())
			if _, err := client.CoreV1().Secrets(secret.Namespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					return fmt.Errorf("server at %s did not answer: is it running?", restConfig.Host)
				}
				return fmt.Errorf("store token: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.String())
			if ca, err := pki.ReadCert(filepath.Join(dataDir, "pki", "ca.crt")); err == nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "join a node with: strata agent --server %s --token %s --ca-hash %s\n",
					advertisedServer(ctx, client, restConfig.Host), t, (&pki.Authority{Cert: ca}).Hash())
			}
			return nil
		},
	}
	create.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory")
	create.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid (0 = never expires)")
	create.Flags().StringVar(&description, "description", "", "a note stored with the token")
	token.AddCommand(create)
	return token
}

func newAgentCmd() *cobra.Command {
	var (
		dataDir, serverURL, tokenArg, caHash, nodeName, nodeIP, cgroupRoot, registryURL, logLevel string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Join this machine to a Strata server as a node (kubelet, containerd, pod network)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logLevel, os.Stderr)
			if err != nil {
				return err
			}
			if serverURL == "" || !strings.HasPrefix(serverURL, "https://") {
				return fmt.Errorf("--server: %q must be the server's https:// URL, e.g. https://10.0.0.1:6443", serverURL)
			}
			tok, err := pki.ParseJoinToken(tokenArg)
			if err != nil {
				return fmt.Errorf("--token: %w (create one with `strata token create` on the server)", err)
			}
			if caHash != "" && !strings.HasPrefix(caHash, "sha256:") {
				return fmt.Errorf("--ca-hash: %q must look like sha256:<64 hex digits>", caHash)
			}
			ip := net.ParseIP(nodeIP)
			if nodeIP != "" && ip == nil {
				return fmt.Errorf("--node-ip: %q is not an IP address", nodeIP)
			}
			if registryURL != "" && registryURL != agent.NoRegistry {
				if err := checkRegistryURL(registryURL); err != nil {
					return fmt.Errorf("--registry: %w", err)
				}
			}
			if _, err := kube.ConfigureLogging(log.Handler(), 0); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return agent.Join(ctx, agent.JoinConfig{
				DataDir: dataDir, Server: serverURL, Token: tok, CAHash: caHash,
				NodeName: nodeName, NodeIP: ip, CgroupRoot: cgroupRoot, Registry: registryURL, Logger: log,
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "/var/lib/strata-agent", "directory for the node's state")
	f.StringVar(&serverURL, "server", "", "the server's URL, https://HOST:6443 (required)")
	f.StringVar(&tokenArg, "token", "", "a join token from `strata token create` (required)")
	f.StringVar(&caHash, "ca-hash", "", "pin the server's CA: sha256:<hex> of its public key (printed by `strata token create`)")
	f.StringVar(&nodeName, "node-name", "", "node name (default: the hostname)")
	f.StringVar(&nodeIP, "node-ip", "", "the IP other nodes reach this one at (default: the first non-loopback address)")
	f.StringVar(&cgroupRoot, "cgroup-root", "/", "cgroup holding all of this node's pods (give each node its own when several share a machine)")
	f.StringVar(&registryURL, "registry", "", "registry every image is pulled through first, https://HOST:PORT (default: the server's registry on the --server host; \"none\" turns it off)")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return cmd
}

// advertisedServer is the API URL the server publishes for joining nodes
// (kube-public/cluster-info), or fallback.
func advertisedServer(ctx context.Context, client kubernetes.Interface, fallback string) string {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		return fallback
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return fallback
	}
	for _, c := range cfg.Clusters {
		return c.Server
	}
	return fallback
}

func newImageCmd() *cobra.Command {
	image := &cobra.Command{Use: "image", Short: "Manage container images: load them into a node, push them to the cluster's registry"}
	var (
		dataDir, registryURL string
		push                 bool
	)
	importCmd := &cobra.Command{
		Use:   "import FILE.tar...",
		Short: "Load docker or OCI image archives into this node's containerd (no registry needed); --push also pushes them to the cluster's registry",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			socket, ok := localNodeSocket(dataDir)
			if !ok && !push {
				return fmt.Errorf("no node containerd under --data-dir %s (%s): is `strata server` or `strata agent` running there? (--push pushes to the cluster's registry instead)", dataDir, socket)
			}
			if push {
				if err := pushArchives(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), dataDir, registryURL, files); err != nil {
					return err
				}
				if !ok {
					fmt.Fprintf(cmd.ErrOrStderr(), "no node on this machine (%s): pushed only\n", socket)
					return nil
				}
			}
			for _, file := range files {
				f, err := os.Open(file)
				if err != nil {
					return err
				}
				names, err := containerd.ImportImage(cmd.Context(), socket, f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				for _, n := range names {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s\n", n)
				}
			}
			return nil
		},
	}
	importCmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's or agent's data directory")
	importCmd.Flags().BoolVar(&push, "push", false, "also push the images to the cluster's registry, from which every node pulls them")
	importCmd.Flags().StringVar(&registryURL, "registry", "", "with --push: the registry's https://HOST:PORT (default: the one the server at --data-dir publishes)")

	pushCmd := &cobra.Command{
		Use:   "push FILE.tar...",
		Short: "Push docker or OCI image archives to the cluster's registry; every node then pulls them under their own names",
		Long: `Push the images of docker or OCI image archives to the cluster's registry, with
the admin kubeconfig's client certificate. Every node's containerd asks that
registry first for any image, so a pod can then use the image's own name
(docker.io/library/busybox:1.36, registry.example/app:1) with no other registry
reachable.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			return pushArchives(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), dataDir, registryURL, files)
		},
	}
	pushCmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (for the admin kubeconfig)")
	pushCmd.Flags().StringVar(&registryURL, "registry", "", "the registry's https://HOST:PORT (default: the one the server at --data-dir publishes)")
	image.AddCommand(importCmd, pushCmd, newImageUploadCmd())
	return image
}

// localNodeSocket finds the containerd socket of a node under dataDir: a
// server's node keeps it under agent/, a joined agent directly.
func localNodeSocket(dataDir string) (string, bool) {
	socket := containerd.NewPaths(filepath.Join(dataDir, "agent")).Socket()
	if fileExists(socket) {
		return socket, true
	}
	if alt := containerd.NewPaths(dataDir).Socket(); fileExists(alt) {
		return alt, true
	}
	return socket, false
}

func checkRegistryURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return fmt.Errorf("%q must be an https://HOST:PORT URL", s)
	}
	return nil
}

// pushArchives pushes every named image of files to the cluster's registry
// as the admin, under the names nodes will ask the registry for.
func pushArchives(ctx context.Context, out, errOut io.Writer, dataDir, registryURL string, files []string) error {
	reg, err := adminRegistry(ctx, dataDir, registryURL)
	if err != nil {
		return err
	}
	defer reg.transport.CloseIdleConnections()
	host, transport, registryURL := reg.host, reg.transport, reg.url
	pushed := 0
	for _, file := range files {
		archive, err := ociimage.OpenArchive(file)
		if err != nil {
			return err
		}
		err = func() error {
			defer archive.Close()
			for _, ai := range archive.Images {
				if ai.Ref == nil {
					fmt.Fprintf(errOut, "%s: skipped an image with no name (tag it before saving it)\n", file)
					continue
				}
				dst, err := ociimage.MirrorRef(ai.Ref, host)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				fmt.Fprintf(out, "pushing %s to %s\n", ai.Ref, dst)
				digest, err := ociimage.Push(ctx, ai, dst, transport)
				if err != nil {
					return fmt.Errorf("push %s: %w", ai.Ref, explainPushError(err, registryURL))
				}
				fmt.Fprintf(out, "pushed %s@%s\n", ai.Ref, digest)
				pushed++
			}
			return nil
		}()
		if err != nil {
			return err
		}
	}
	if pushed == 0 {
		return errors.New("no named image in the archives: nothing pushed")
	}
	return nil
}

// registryAccess is how the admin reaches the cluster's registry.
type registryAccess struct {
	restConfig *rest.Config
	url, host  string
	transport  *http.Transport // trusts the cluster CA, presents the admin certificate
}

// adminRegistry prepares pushes with the admin kubeconfig of the server
// in dataDir, to registryURL or the registry the server publishes.
func adminRegistry(ctx context.Context, dataDir, registryURL string) (registryAccess, error) {
	kubeconfig := server.AdminKubeconfig(dataDir)
	restConfig, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return registryAccess{}, fmt.Errorf("%s: %w (pushing needs the admin kubeconfig of the server: run this where `strata server --data-dir %s` runs, or pass its --data-dir)", kubeconfig, err, dataDir)
	}
	if len(restConfig.CertData) == 0 && restConfig.CertFile == "" {
		return registryAccess{}, fmt.Errorf("%s has no client certificate: pushing needs the cluster admin's certificate (group %s)", kubeconfig, pki.MastersGroup)
	}
	tlsConfig, err := rest.TLSConfigFor(restConfig)
	if err != nil {
		return registryAccess{}, fmt.Errorf("%s: %w", kubeconfig, err)
	}
	if registryURL == "" {
		if registryURL, err = discoverRegistry(ctx, restConfig); err != nil {
			return registryAccess{}, err
		}
	} else if err := checkRegistryURL(registryURL); err != nil {
		return registryAccess{}, fmt.Errorf("--registry: %w", err)
	}
	return registryAccess{
		restConfig: restConfig,
		url:        registryURL,
		host:       strings.TrimPrefix(strings.TrimSuffix(registryURL, "/"), "https://"),
		transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSClientConfig:     tlsConfig,
			ForceAttemptHTTP2:   true,
			TLSHandshakeTimeout: 10 * time.Second,
		},
	}, nil
}

// discoverRegistry asks the server which port its registry listens on and
// returns the registry's URL on the host the admin kubeconfig reaches.
func discoverRegistry(ctx context.Context, restConfig *rest.Config) (string, error) {
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("cannot ask the server at %s for its registry (is `strata server` running? or pass --registry https://HOST:PORT): %w", restConfig.Host, err)
	}
	port, err := strconv.Atoi(cm.Data[agent.RegistryPortKey])
	if err != nil {
		return "", fmt.Errorf("the server at %s publishes no registry port (kube-public/cluster-info %s): upgrade it, or pass --registry https://HOST:PORT", restConfig.Host, agent.RegistryPortKey)
	}
	return agent.RegistryURL(restConfig.Host, port)
}

// explainPushError adds what to do to the errors a push commonly meets.
func explainPushError(err error, registryURL string) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("the registry refused the push (use the admin kubeconfig's certificate: --data-dir of the server): %w", err)
		}
		return err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Errorf("cannot reach the registry at %s (is `strata server` running, and its --registry-port reachable from here?): %w", registryURL, err)
	}
	return err
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
