package kube

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	kubeletapp "k8s.io/kubernetes/cmd/kubelet/app"
	kubeletoptions "k8s.io/kubernetes/cmd/kubelet/app/options"
	kubeletconfigvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
)

// KubeletConfig is what Strata decides about a node's kubelet.
type KubeletConfig struct {
	NodeName   string
	NodeIP     string
	Kubeconfig string // node credentials (system:node:<name>)
	// BootstrapKubeconfig, when set, holds a bootstrap token: the kubelet
	// requests its client certificate with it, writes Kubeconfig, and
	// rotates the certificate before it expires.
	BootstrapKubeconfig string
	RootDir             string // kubelet's state (pods, volumes, plugins)
	PodLogsDir          string // containers' logs (upstream: /var/log/pods)
	CertDir             string // kubelet serving certificate
	ClientCAFile        string // authenticates the apiserver and other clients
	RuntimeEndpoint     string // containerd's CRI socket, unix://...
	ClusterDNS          []string
	ClusterDomain       string
	ResolvConf          string
	CgroupRoot          string
	Port                int32
	NodeLabels          map[string]string
	StatusUpdateEvery   time.Duration
}

// RunKubelet runs upstream kubelet in-process until ctx is done.
func RunKubelet(ctx context.Context, c KubeletConfig) error {
	kc, err := kubeletoptions.NewKubeletConfiguration()
	if err != nil {
		return fmt.Errorf("kubelet: %w", err)
	}
	flags := kubeletoptions.NewKubeletFlags()
	flags.KubeConfig = c.Kubeconfig
	flags.BootstrapKubeconfig = c.BootstrapKubeconfig
	flags.HostnameOverride = c.NodeName
	flags.NodeIP = c.NodeIP
	flags.RootDirectory = c.RootDir
	flags.CertDirectory = c.CertDir
	flags.NodeLabels = c.NodeLabels

	// These hosts run cgroup v1 under a PID 1 that is not systemd.
	kc.CgroupDriver = "cgroupfs"
	kc.FailCgroupV1 = false
	kc.FailSwapOn = false
	kc.CgroupsPerQOS = true
	kc.CgroupRoot = c.CgroupRoot
	if c.PodLogsDir != "" {
		kc.PodLogsDir = c.PodLogsDir
	}
	kc.ContainerRuntimeEndpoint = c.RuntimeEndpoint
	kc.ClusterDNS = c.ClusterDNS
	kc.ClusterDomain = c.ClusterDomain
	kc.ResolverConfig = c.ResolvConf
	kc.Port = c.Port
	kc.ReadOnlyPort = 0
	kc.Authentication.X509.ClientCAFile = c.ClientCAFile
	kc.Authentication.Webhook.Enabled = true
	kc.Authentication.Anonymous.Enabled = false
	kc.Authorization.Mode = "Webhook"
	kc.SerializeImagePulls = false
	kc.HairpinMode = "hairpin-veth"
	kc.StaticPodPath = ""
	kc.RotateCertificates = c.BootstrapKubeconfig != ""
	if c.StatusUpdateEvery > 0 {
		kc.NodeStatusUpdateFrequency = metav1.Duration{Duration: c.StatusUpdateEvery}
	}
	// Image garbage collection and eviction keep upstream's defaults, but
	// not the disk-pressure eviction of a test machine's shared disk at 10%.
	kc.EvictionHard = map[string]string{"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"}

	if err := kubeletoptions.ValidateKubeletFlags(flags); err != nil {
		return fmt.Errorf("kubelet flags: %w", err)
	}
	if err := kubeletconfigvalidation.ValidateKubeletConfiguration(kc, utilfeature.DefaultFeatureGate); err != nil {
		return fmt.Errorf("kubelet configuration: %w", err)
	}
	server := &kubeletoptions.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	deps, err := kubeletapp.UnsecuredDependencies(ctx, server, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("kubelet dependencies: %w", err)
	}
	return ignoreCancel(ctx, kubeletapp.Run(ctx, server, deps, utilfeature.DefaultFeatureGate))
}
