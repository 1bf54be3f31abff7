package pki

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Identities of the control-plane clients. The controller-manager and
// scheduler names are the ones upstream's bootstrap RBAC policy grants.
const (
	AdminUser             = "strata-admin"
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
	KubeletClientUser     = "kube-apiserver-kubelet-client"
	FrontProxyClientUser  = "front-proxy-client"
	StrataUser            = "system:strata"
	MastersGroup          = "system:masters"
)

// Hosts are the names and addresses the API server is reached at.
type Hosts struct {
	DNSNames []string
	IPs      []net.IP
}

// Cluster is the set of files that make up a server's PKI, under Dir.
type Cluster struct {
	Dir          string
	CA           *Authority // signs serving certs and client certs for the API server
	FrontProxyCA *Authority // signs the aggregation-layer proxy client
	EtcdCA       *Authority // signs etcd's serving and client certs

	APIServerCert, APIServerKey          string
	RegistryCert, RegistryKey            string // the OCI registry's serving cert (the API's names)
	KubeletClientCert, KubeletClientKey  string
	FrontProxyCert, FrontProxyKey        string
	EtcdServerCert, EtcdServerKey        string
	EtcdClientCert, EtcdClientKey        string
	ServiceAccountKey, ServiceAccountPub string
}

// leaf names a certificate file pair and what it certifies.
type leaf struct {
	ca        *Authority
	cert, key *string
	name      string
	spec      Spec
}

// EnsureCluster creates or renews every CA, certificate and key under dir.
// It returns the names of the certificates it (re)issued.
func EnsureCluster(dir string, apiHosts Hosts, now time.Time) (*Cluster, []string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	c := &Cluster{Dir: dir}
	var err error
	if c.CA, err = LoadOrCreateCA(dir, "ca", "strata-ca"); err != nil {
		return nil, nil, err
	}
	if c.FrontProxyCA, err = LoadOrCreateCA(dir, "front-proxy-ca", "strata-front-proxy-ca"); err != nil {
		return nil, nil, err
	}
	if c.EtcdCA, err = LoadOrCreateCA(dir, "etcd-ca", "strata-etcd-ca"); err != nil {
		return nil, nil, err
	}
	if c.ServiceAccountKey, c.ServiceAccountPub, err = EnsureServiceAccountKey(dir); err != nil {
		return nil, nil, err
	}
	loopback := Hosts{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}}
	leaves := []leaf{
		{c.CA, &c.APIServerCert, &c.APIServerKey, "apiserver", Spec{CommonName: "kube-apiserver", DNSNames: apiHosts.DNSNames, IPs: apiHosts.IPs, Usage: ServerAuth}},
		{c.CA, &c.RegistryCert, &c.RegistryKey, "registry", Spec{CommonName: "strata-registry", DNSNames: apiHosts.DNSNames, IPs: apiHosts.IPs, Usage: ServerAuth}},
		{c.CA, &c.KubeletClientCert, &c.KubeletClientKey, "apiserver-kubelet-client", Spec{CommonName: KubeletClientUser, Usage: ClientAuth}},
		{c.FrontProxyCA, &c.FrontProxyCert, &c.FrontProxyKey, "front-proxy-client", Spec{CommonName: FrontProxyClientUser, Usage: ClientAuth}},
		{c.EtcdCA, &c.EtcdServerCert, &c.EtcdServerKey, "etcd-server", Spec{CommonName: "etcd-server", DNSNames: loopback.DNSNames, IPs: loopback.IPs, Usage: ServerAuth | ClientAuth}},
		{c.EtcdCA, &c.EtcdClientCert, &c.EtcdClientKey, "etcd-client", Spec{CommonName: "kube-apiserver-etcd-client", Usage: ClientAuth}},
	}
	var issued []string
	for _, l := range leaves {
		*l.cert, *l.key = filepath.Join(dir, l.name+".crt"), filepath.Join(dir, l.name+".key")
		did, err := l.ca.Ensure(*l.cert, *l.key, l.spec, now)
		if err != nil {
			return nil, nil, err
		}
		if did {
			issued = append(issued, l.name)
		}
	}
	return c, issued, nil
}

// EnsureClientCert makes sure dir/name.{crt,key} hold a client certificate
// for user in groups, signed by the cluster CA, and returns their paths.
func (c *Cluster) EnsureClientCert(name, user string, groups []string, now time.Time) (certPath, keyPath string, issued bool, err error) {
	certPath, keyPath = filepath.Join(c.Dir, name+".crt"), filepath.Join(c.Dir, name+".key")
	issued, err = c.CA.Ensure(certPath, keyPath, Spec{CommonName: user, Organization: groups, Usage: ClientAuth}, now)
	return certPath, keyPath, issued, err
}

// Kubeconfig renders a kubeconfig that reaches server, trusts caPEM and
// authenticates with the given client certificate, all embedded so the file
// can be copied to another machine.
func Kubeconfig(server, contextName string, caPEM, certPEM, keyPEM []byte) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[contextName] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: contextName, Namespace: "default"}
	cfg.CurrentContext = contextName
	return clientcmd.Write(*cfg)
}

// WriteKubeconfig writes a kubeconfig for a client whose certificate is
// stored at certPath/keyPath, with mode 0600.
func (c *Cluster) WriteKubeconfig(path, server, contextName, certPath, keyPath string) error {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return err
	}
	data, err := Kubeconfig(server, contextName, c.CA.CertPEM(), certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("render kubeconfig %s: %w", path, err)
	}
	return WriteFileAtomic(path, data, 0o600)
}
