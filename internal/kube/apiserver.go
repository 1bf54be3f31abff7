package kube

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/authentication/request/union"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"

	strataadmission "github.com/strata-cloud/strata/internal/admission"
)

// APIServerConfig is what Strata decides about kube-apiserver.
type APIServerConfig struct {
	BindAddress      string
	Port             int
	AdvertiseAddress net.IP
	ServiceCIDR      string
	NodePortRange    string

	EtcdServers                              []string
	EtcdCAFile, EtcdCertFile, EtcdKeyFile    string
	ClientCAFile                             string
	ServingCertFile, ServingKeyFile          string
	ServiceAccountKeyFile, ServiceAccountPub string
	KubeletClientCert, KubeletClientKey      string
	FrontProxyCAFile                         string
	FrontProxyCert, FrontProxyKey            string
	Extra                                    []string // appended last; later flags win
}

// Args renders the kube-apiserver command line for c.
func (c APIServerConfig) Args() []string {
	args := []string{
		"--bind-address=" + c.BindAddress,
		"--secure-port=" + strconv.Itoa(c.Port),
		"--etcd-servers=" + strings.Join(c.EtcdServers, ","),
		"--service-cluster-ip-range=" + c.ServiceCIDR,
		"--service-node-port-range=" + c.NodePortRange,
		"--client-ca-file=" + c.ClientCAFile,
		"--tls-cert-file=" + c.ServingCertFile,
		"--tls-private-key-file=" + c.ServingKeyFile,
		"--tls-min-version=VersionTLS12",
		"--service-account-key-file=" + c.ServiceAccountPub,
		"--service-account-signing-key-file=" + c.ServiceAccountKeyFile,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--enable-bootstrap-token-auth=true",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + c.KubeletClientCert,
		"--kubelet-client-key=" + c.KubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--requestheader-client-ca-file=" + c.FrontProxyCAFile,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + c.FrontProxyCert,
		"--proxy-client-key-file=" + c.FrontProxyKey,
		"--profiling=false",
		"--endpoint-reconciler-type=lease",
	}
	if c.AdvertiseAddress != nil {
		args = append(args, "--advertise-address="+c.AdvertiseAddress.String())
	}
	if c.EtcdCAFile != "" {
		args = append(args, "--etcd-cafile="+c.EtcdCAFile, "--etcd-certfile="+c.EtcdCertFile, "--etcd-keyfile="+c.EtcdKeyFile)
	}
	return append(args, c.Extra...)
}

// RunAPIServer runs kube-apiserver until ctx is done. readyz checks are
// added to its /readyz so that the health of Strata's other parts shows
// where operators already look. Bearer tokens that upstream's
// authenticators refuse are tried with tokens, when not nil.
func RunAPIServer(ctx context.Context, args []string, tokens authenticator.Token, readyz ...healthz.HealthChecker) error {
	s := options.NewServerRunOptions()
	// Strata's admission plugins join upstream's, enabled by default.
	strataadmission.Register(s.Admission.GenericAdmission.Plugins)
	s.Admission.GenericAdmission.RecommendedPluginOrder = strataadmission.Order(s.Admission.GenericAdmission.RecommendedPluginOrder)
	if err := parseInto("kube-apiserver", s.Flags(), args); err != nil {
		return err
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	// The apiserver's loopback clients should not log self-issued warnings.
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	completed, err := s.Complete(ctx)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return fmt.Errorf("kube-apiserver: %w", utilerrors.NewAggregate(errs))
	}
	// What app.Run does, with a hook to add readyz checks before serving.
	config, err := app.NewConfig(completed)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if tokens != nil {
		extra := bearertoken.New(tokens)
		for _, g := range []*genericapiserver.Config{config.KubeAPIs.ControlPlane.Generic, &config.ApiExtensions.GenericConfig.Config, &config.Aggregator.GenericConfig.Config} {
			g.Authentication.Authenticator = union.New(g.Authentication.Authenticator, extra)
		}
	}
	done, err := config.Complete()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	chain, err := app.CreateServerChain(done)
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	if len(readyz) > 0 {
		if err := chain.GenericAPIServer.AddReadyzChecks(readyz...); err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
	}
	prepared, err := chain.PrepareRun()
	if err != nil {
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return prepared.Run(ctx)
}
