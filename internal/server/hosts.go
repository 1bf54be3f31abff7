package server

import (
	"context"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/strata-cloud/strata/internal/pki"
)

// apiHosts returns the names and addresses the API server certificate must
// cover, and the address it advertises to the cluster.
func apiHosts(cfg Config) (pki.Hosts, net.IP) {
	hosts := pki.Hosts{
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:      []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if name, err := os.Hostname(); err == nil && name != "" {
		hosts.DNSNames = append(hosts.DNSNames, name)
	}
	if ip := firstServiceIP(cfg.ServiceCIDR); ip != nil {
		hosts.IPs = append(hosts.IPs, ip)
	}
	var advertise net.IP
	// The advertised address backs the "kubernetes" Service's endpoints,
	// which may not be loopback: a loopback bind still advertises a host IP.
	if bind := net.ParseIP(cfg.BindAddress); bind != nil && !bind.IsUnspecified() && !bind.IsLoopback() {
		advertise = bind
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || ipnet.IP.IsLinkLocalUnicast() {
			continue
		}
		if !slices.ContainsFunc(hosts.IPs, ipnet.IP.Equal) {
			hosts.IPs = append(hosts.IPs, ipnet.IP)
		}
		if advertise == nil && !ipnet.IP.IsLoopback() && ipnet.IP.To4() != nil {
			advertise = ipnet.IP
		}
	}
	if advertise != nil && !slices.ContainsFunc(hosts.IPs, advertise.Equal) {
		hosts.IPs = append(hosts.IPs, advertise)
	}
	return hosts, advertise
}

// firstServiceIP is the ClusterIP of the "kubernetes" Service: the first
// address of the service range.
func firstServiceIP(cidr string) net.IP {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		return nil
	}
	ip := slices.Clone(n.IP)
	ip[len(ip)-1]++
	return ip
}

func joinHostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// localServerURL is the API URL clients on this machine use.
func localServerURL(cfg Config) string {
	return "https://" + joinHostPort(loopbackFor(cfg.BindAddress), cfg.APIPort)
}

// renewLoop re-checks every certificate periodically and renews those close
// to expiry. The apiserver reloads its serving certificate from disk; client
// certificates of in-process components are reloaded at the next restart,
// and they are renewed long enough before expiry for that.
func renewLoop(ctx context.Context, log *slog.Logger, dir *dataDir, hosts pki.Hosts, cfg Config) error {
	t := time.NewTicker(renewInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cluster, issued, err := pki.EnsureCluster(dir.sub("pki"), hosts, time.Now())
		if err != nil {
			log.Error("certificate renewal failed; retrying later", "err", err)
			continue
		}
		if _, err := writeClientCredentials(dir, cluster, cfg); err != nil {
			log.Error("client certificate renewal failed; retrying later", "err", err)
			continue
		}
		if len(issued) > 0 {
			log.Warn("renewed certificates; restart strata within 60 days so in-process clients load them", "certs", issued)
		}
	}
}
