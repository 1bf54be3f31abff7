package server

import (
	"fmt"
	"net"
	"time"

	"github.com/strata-cloud/strata/internal/agent"
	"github.com/strata-cloud/strata/internal/agent/containerd"
	"github.com/strata-cloud/strata/internal/pki"
)

// localAgent configures the node agent that runs inside the server. Its
// node credentials are issued directly from the cluster CA (a joining
// agent gets them through a bootstrap token instead).
func localAgent(dir *dataDir, cluster *pki.Cluster, cfg Config, nodeIP net.IP) (agent.Config, error) {
	name, err := agent.NodeName(cfg.NodeName)
	if err != nil {
		return agent.Config{}, err
	}
	bin, runc, err := agent.HostBinaries()
	if err != nil {
		return agent.Config{}, fmt.Errorf("node agent: %w, or run with --disable-agent", err)
	}
	if nodeIP == nil {
		nodeIP = net.IPv4(127, 0, 0, 1)
	}
	cert, key, _, err := cluster.EnsureClientCert("node-"+name, "system:node:"+name, []string{"system:nodes"}, time.Now())
	if err != nil {
		return agent.Config{}, err
	}
	kubeconfig := dir.sub("agent", "kubelet.kubeconfig")
	if err := cluster.WriteKubeconfig(kubeconfig, localServerURL(cfg), "strata", cert, key); err != nil {
		return agent.Config{}, err
	}
	ac := agent.Config{
		DataDir:       dir.sub("agent"),
		NodeName:      name,
		NodeIP:        nodeIP,
		Binary:        bin,
		RuncBinary:    runc,
		Kubeconfig:    kubeconfig,
		ClientCAFile:  cluster.CA.CertPath,
		ClusterDNS:    clusterDNS(cfg.ServiceCIDR).String(),
		ClusterCIDR:   cfg.ClusterCIDR,
		ClusterDomain: "cluster.local",
		CgroupRoot:    "/",
		Logger:        cfg.Logger.With("component", "agent"),
		Images:        agent.DefaultImages(),
		LateImages:    agent.VMImages(bin, cfg.Logger.With("component", "agent")),
		Mirror:        containerd.Mirror{URL: localRegistryURL(cfg), CAFile: cluster.CA.CertPath},
	}
	ac.Network = agent.PodNetwork(ac, cfg.ClusterCIDR)
	return ac, nil
}

// clusterDNS is the Service IP of cluster DNS: the tenth address of the
// service range, as kubeadm and k3s choose.
func clusterDNS(serviceCIDR string) net.IP {
	ip := firstServiceIP(serviceCIDR)
	if ip == nil {
		return nil
	}
	ip[len(ip)-1] += 9
	return ip
}
