package kube

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// ProxyConfig is what Strata decides about a node's kube-proxy.
type ProxyConfig struct {
	NodeName    string
	Kubeconfig  string
	ClusterCIDR string
}

// Args renders the kube-proxy command line for c.
func (c ProxyConfig) Args() []string {
	return []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--hostname-override=" + c.NodeName,
		"--proxy-mode=nftables",
		"--cluster-cidr=" + c.ClusterCIDR,
		// Leave the host's conntrack sysctls alone: they are host-wide and
		// not writable in every environment.
		"--conntrack-max-per-core=0",
		"--conntrack-tcp-timeout-established=0s",
		"--conntrack-tcp-timeout-close-wait=0s",
	}
}

// RunProxy runs upstream kube-proxy in-process until ctx is done.
func RunProxy(ctx context.Context, args []string) error {
	o := proxyapp.NewOptions()
	fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("kube-proxy flags: %w", err)
	}
	if err := o.Complete(fs); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("kube-proxy: %w", err)
	}
	// Options.Run only returns on error: a clean stop leaves its loop
	// waiting, so the result is awaited beside ctx.
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	select {
	case err := <-done:
		return ignoreCancel(ctx, err)
	case <-ctx.Done():
		return nil
	}
}
