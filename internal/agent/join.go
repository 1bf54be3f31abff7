package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"

	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/pki"
)

// ErrUntrusted marks a join that must not be retried as is: the server is
// not the one the token or CA hash names.
var ErrUntrusted = errors.New("untrusted server")

// RegistryPortKey is the key of kube-public/cluster-info that holds the
// port of the server's registry. It is outside the signed kubeconfig, but
// a node trusts the registry only through the CA that the signature
// vouches for, so a forged port can make pulls fail, never lie.
const RegistryPortKey = "strata-registry-port"

// Keys of kube-public/cluster-info with the cluster's network settings,
// which a joining node must share with the server.
const (
	ClusterCIDRKey = "strata-cluster-cidr"
	ClusterDNSKey  = "strata-cluster-dns"
)

// ClusterInfo is what a joining node learns from the server's public
// cluster-info.
type ClusterInfo struct {
	CAPEM []byte // the cluster CA certificate
	// RegistryPort is the port of the server's registry on the server's
	// host; 0 when the server publishes none.
	RegistryPort int
	// ClusterCIDR and ClusterDNS are the pod range and the cluster DNS
	// Service IP; the defaults when the server publishes none.
	ClusterCIDR, ClusterDNS string
}

// Discover fetches the server's public cluster-info and checks it the way
// kubeadm does: the bootstrap signer signs it with every valid token, so a
// matching signature proves the server knows the token's secret; a CA hash,
// when given, pins the CA itself.
func Discover(ctx context.Context, server string, token pki.JoinToken, caHash string) (ClusterInfo, error) {
	caPEM, data, err := discover(ctx, server, token, caHash)
	if err != nil {
		return ClusterInfo{}, err
	}
	return clusterInfo(server, caPEM, data)
}

// Rediscover reads cluster-info again for a node that joined before: the
// server is verified by the CA the node trusts since, so the join token,
// which may have expired, plays no part.
func Rediscover(ctx context.Context, server string, caPEM []byte) (ClusterInfo, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return ClusterInfo{}, fmt.Errorf("the saved cluster CA is not a PEM certificate")
	}
	data, err := fetchClusterInfo(ctx, server, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		return ClusterInfo{}, err
	}
	return clusterInfo(server, caPEM, data)
}

func clusterInfo(server string, caPEM []byte, data map[string]string) (ClusterInfo, error) {
	info := ClusterInfo{CAPEM: caPEM, ClusterCIDR: DefaultClusterCIDR, ClusterDNS: DefaultClusterDNS}
	if p := data[RegistryPortKey]; p != "" {
		port, err := strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return ClusterInfo{}, fmt.Errorf("%s: cluster-info: %s %q is not a port", server, RegistryPortKey, p)
		}
		info.RegistryPort = port
	}
	if c := data[ClusterCIDRKey]; c != "" {
		if _, err := netip.ParsePrefix(c); err != nil {
			return ClusterInfo{}, fmt.Errorf("%s: cluster-info: %s %q is not a CIDR", server, ClusterCIDRKey, c)
		}
		info.ClusterCIDR = c
	}
	if d := data[ClusterDNSKey]; d != "" {
		if _, err := netip.ParseAddr(d); err != nil {
			return ClusterInfo{}, fmt.Errorf("%s: cluster-info: %s %q is not an IP address", server, ClusterDNSKey, d)
		}
		info.ClusterDNS = d
	}
	return info, nil
}

// RegistryURL is the URL of the registry at port on the host of the API
// server URL server.
func RegistryURL(server string, port int) (string, error) {
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("%q: not a URL with a host", server)
	}
	return "https://" + net.JoinHostPort(u.Hostname(), strconv.Itoa(port)), nil
}

func discover(ctx context.Context, server string, token pki.JoinToken, caHash string) ([]byte, map[string]string, error) {
	// The CA is not known yet: the response is verified by its signature.
	data, err := fetchClusterInfo(ctx, server, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // verified by JWS and CA hash below
	if err != nil {
		return nil, nil, err
	}
	kubeconfig := data[bootstrapapi.KubeConfigKey]
	sig, ok := data[bootstrapapi.JWSSignatureKeyPrefix+token.ID]
	if !ok {
		return nil, nil, fmt.Errorf("%w: token %s is unknown to %s or expired (create one with `strata token create` on the server)", ErrUntrusted, token.ID, server)
	}
	if !jws.DetachedTokenIsValid(sig, kubeconfig, token.ID, token.Secret) {
		return nil, nil, fmt.Errorf("%w: cluster-info signature does not match token %s: wrong token secret, or not the server you meant", ErrUntrusted, token.ID)
	}
	cfg, err := clientcmd.Load([]byte(kubeconfig))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: cluster-info kubeconfig: %w", server, err)
	}
	var caPEM []byte
	for _, c := range cfg.Clusters {
		caPEM = c.CertificateAuthorityData
	}
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return nil, nil, fmt.Errorf("%s: cluster-info holds no CA certificate", server)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: cluster-info CA: %w", server, err)
	}
	if caHash != "" {
		sum := sha256.Sum256(ca.RawSubjectPublicKeyInfo)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != caHash {
			return nil, nil, fmt.Errorf("%w: the server's CA hash is %s, not --ca-hash %s", ErrUntrusted, got, caHash)
		}
	}
	return caPEM, data, nil
}

// fetchClusterInfo GETs kube-public/cluster-info anonymously.
func fetchClusterInfo(ctx context.Context, server string, tlsConfig *tls.Config) (map[string]string, error) {
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/api/v1/namespaces/kube-public/configmaps/"+bootstrapapi.ConfigMapClusterInfo, nil)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", server, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach %s: %w", server, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: cluster-info: HTTP %d", server, resp.StatusCode)
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(body, &cm); err != nil {
		return nil, fmt.Errorf("%s: cluster-info: %w", server, err)
	}
	return cm.Data, nil
}

// BootstrapKubeconfig renders the kubeconfig a joining kubelet uses once,
// to request its own client certificate.
func BootstrapKubeconfig(server string, caPEM []byte, token pki.JoinToken) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["strata"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["bootstrap"] = &clientcmdapi.AuthInfo{Token: token.String()}
	cfg.Contexts["bootstrap"] = &clientcmdapi.Context{Cluster: "strata", AuthInfo: "bootstrap"}
	cfg.CurrentContext = "bootstrap"
	return clientcmd.Write(*cfg)
}

// JoinConfig is what `strata agent` is told.
type JoinConfig struct {
	DataDir, Server, CAHash, NodeName string
	Token                             pki.JoinToken
	NodeIP                            net.IP
	// CgroupRoot is the cgroup of all the node's pods ("/" if empty); one
	// per node when several share a machine.
	CgroupRoot string
	// Registry overrides the registry the node's containerd asks first
	// (an https:// URL, or NoRegistry); empty means the one the server
	// publishes, on the server's host.
	Registry string
	Logger   *slog.Logger
}

// NoRegistry as JoinConfig.Registry turns the mirror off: every image is
// pulled from its own registry.
const NoRegistry = "none"

// Join discovers and trusts the server (retrying with backoff while it is
// unreachable; refusing at once when it is not the server the token or CA
// hash names), then runs the node with a bootstrap kubeconfig.
func Join(ctx context.Context, jc JoinConfig) error {
	log := jc.Logger
	if err := os.MkdirAll(jc.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", jc.DataDir, err)
	}
	caFile := filepath.Join(jc.DataDir, "ca.crt")
	kubeconfig := filepath.Join(jc.DataDir, "kubelet.kubeconfig")
	// A node that joined before trusts the CA it saved then, and has
	// credentials of its own: its join token may be long expired.
	savedCA, _ := os.ReadFile(caFile)
	_, statErr := os.Stat(kubeconfig)
	joined := len(savedCA) > 0 && statErr == nil
	var info ClusterInfo
	backoff := time.Second
	for {
		var err error
		if joined {
			info, err = Rediscover(ctx, jc.Server, savedCA)
		} else {
			info, err = Discover(ctx, jc.Server, jc.Token, jc.CAHash)
		}
		if err == nil {
			break
		}
		if errors.Is(err, ErrUntrusted) {
			log.Error("join refused; retrying", "err", err, "in", backoff)
		} else {
			log.Warn("server not reachable yet; retrying", "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
	caPEM := info.CAPEM
	if err := pki.WriteFileAtomic(caFile, caPEM, 0o644); err != nil {
		return err
	}
	mirror, err := joinMirror(jc, info, caFile)
	if err != nil {
		return err
	}
	boot, err := BootstrapKubeconfig(jc.Server, caPEM, jc.Token)
	if err != nil {
		return err
	}
	bootPath := filepath.Join(jc.DataDir, "bootstrap.kubeconfig")
	if err := pki.WriteFileAtomic(bootPath, boot, 0o600); err != nil {
		return err
	}
	name, err := NodeName(jc.NodeName)
	if err != nil {
		return err
	}
	if !joined {
		// A first join: the name must not belong to a live node.
		if err := checkNameFree(ctx, bootPath, name); err != nil {
			return err
		}
	}
	ip := jc.NodeIP
	if ip == nil {
		ip = firstHostIP()
	}
	bin, runc, err := HostBinaries()
	if err != nil {
		return err
	}
	log.Info("joining", "server", jc.Server, "node", name, "ip", ip, "registry", cmp.Or(mirror.URL, "none"))
	cfg := Config{
		DataDir:             jc.DataDir,
		NodeName:            name,
		NodeIP:              ip,
		Binary:              bin,
		RuncBinary:          runc,
		Kubeconfig:          kubeconfig,
		BootstrapKubeconfig: bootPath,
		ClientCAFile:        caFile,
		ClusterDNS:          info.ClusterDNS,
		ClusterCIDR:         info.ClusterCIDR,
		ClusterDomain:       "cluster.local",
		CgroupRoot:          cmp.Or(jc.CgroupRoot, "/"),
		Logger:              log,
		Images:              DefaultImages(),
		LateImages:          VMImages(bin, log),
		Mirror:              mirror,
	}
	cfg.Network = PodNetwork(cfg, info.ClusterCIDR)
	return Run(ctx, cfg)
}

// joinMirror decides which registry a joining node's containerd asks first:
// the override, else the server's published registry on the server's host.
func joinMirror(jc JoinConfig, info ClusterInfo, caFile string) (containerd.Mirror, error) {
	switch {
	case jc.Registry == NoRegistry:
		return containerd.Mirror{}, nil
	case jc.Registry != "":
		return containerd.Mirror{URL: strings.TrimSuffix(jc.Registry, "/"), CAFile: caFile}, nil
	case info.RegistryPort == 0:
		jc.Logger.Warn("the server publishes no registry; pulling every image from its own registry", "missing", "kube-public/cluster-info "+RegistryPortKey)
		return containerd.Mirror{}, nil
	}
	u, err := RegistryURL(jc.Server, info.RegistryPort)
	if err != nil {
		return containerd.Mirror{}, fmt.Errorf("--server: %w", err)
	}
	return containerd.Mirror{URL: u, CAFile: caFile}, nil
}

// The cluster's defaults, as `strata server` chooses them.
const (
	DefaultClusterCIDR = "10.42.0.0/16"
	DefaultClusterDNS  = "10.43.0.10"
)

// firstHostIP is the first global IPv4 address of this host.
func firstHostIP() net.IP {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

// ErrNameInUse refuses a first join under the name of a node that is alive.
var ErrNameInUse = errors.New("node name in use")

// checkNameFree refuses to join as name while a node of that name renews
// its heartbeat Lease: two kubelets would fight over one Node object. A
// node that has been silent for longer than its lease may be replaced by
// a new machine of the same name.
func checkNameFree(ctx context.Context, bootKubeconfig, name string) error {
	rc, err := clientcmd.BuildConfigFromFlags("", bootKubeconfig)
	if err != nil {
		return err
	}
	rc.Timeout = 10 * time.Second
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	lease, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking that node name %q is free: %w", name, err)
	}
	if leaseLive(lease, time.Now()) {
		return fmt.Errorf("%w: a node named %q is running and renewed its lease at %s; give this machine another --node-name, or stop that node (and `kubectl delete node %s`) first",
			ErrNameInUse, name, lease.Spec.RenewTime.Format(time.RFC3339), name)
	}
	return nil
}

func leaseLive(l *coordinationv1.Lease, now time.Time) bool {
	if l.Spec.RenewTime == nil {
		return false
	}
	d := 40 * time.Second
	if l.Spec.LeaseDurationSeconds != nil {
		d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
	}
	return now.Before(l.Spec.RenewTime.Add(d))
}
