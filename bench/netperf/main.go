// Command netperf measures pod-to-pod TCP throughput across Strata's VXLAN
// overlay with iperf3, beside a direct veth pair and a same-node pod pair in
// the same run, and prints Gbit/s for each and the overlay/veth ratio. It
// never fails on the figures.
//
// The data path is Strata's own, built by internal/network/netlab: two
// "hosts" (network namespaces joined by an underlay veth pair) set up as the
// node agent sets up a node — forwarding, masquerade, the VXLAN device from
// package overlay — and "pods" attached through Strata's CNI plugin with its
// default MTU. Nothing is created in the host's own network namespace. It
// needs root and iperf3, and takes the host-wide lock the e2e tests' node
// agents take, so it never runs beside one.
//
//	go run ./bench/netperf [-time 5s] [-runs 3] [-parallel 1]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/network/netlab"
	"github.com/strata-cloud/strata/internal/testenv"
)

const (
	iperfPort       = 5201
	serverStartWait = 5 * time.Second
	lockTimeout     = 30 * time.Minute
)

type config struct {
	duration time.Duration
	runs     int
	parallel int
	iperf    string
}

// path is one way from a client namespace to a server address.
type path struct {
	name           string
	client, server ns.NetNS
	serverIP       netip.Addr
	mtu            int
	results        []result
}

type result struct {
	gbps        float64 // received by the server
	retransmits int
	cpuClient   float64 // iperf3's host_total and remote_total, percent
	cpuServer   float64
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "time", 5*time.Second, "length of each iperf3 run")
	flag.IntVar(&cfg.runs, "runs", 3, "iperf3 runs per path (interleaved across paths; the median is reported)")
	flag.IntVar(&cfg.parallel, "parallel", 1, "parallel TCP streams per run (iperf3 -P)")
	flag.StringVar(&cfg.iperf, "iperf3", "iperf3", "iperf3 binary")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "netperf bench:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg config) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, netlink, nftables)")
	}
	if cfg.runs < 1 || cfg.parallel < 1 || cfg.duration < time.Second {
		return errors.New("-runs and -parallel must be >= 1, -time >= 1s")
	}
	iperf, err := exec.LookPath(cfg.iperf)
	if err != nil {
		return fmt.Errorf("iperf3 not found (apt-get install iperf3, or hack/install-deps.sh): %w", err)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("nsenter (util-linux) not found: %w", err)
	}

	fmt.Printf("waiting for the host-wide node agent lock (no e2e node runs beside this bench) ...\n")
	release, err := testenv.AcquireAgentLock(lockTimeout)
	if err != nil {
		return err
	}
	defer release()

	dir, err := os.MkdirTemp("", "strata-bench-netperf-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	lab := netlab.New()
	defer lab.Close()

	paths, err := buildPaths(ctx, lab, dir)
	if err != nil {
		return err
	}

	fmt.Printf("\nstrata network benchmark (iperf3 TCP, %s per run, %d stream(s), %d run(s) per path, interleaved)\n",
		cfg.duration, cfg.parallel, cfg.runs)
	fmt.Printf("  cpus: %d   load average: %s   kernel: %s\n\n", runtime.NumCPU(), benchenv.LoadAverage(), kernel())

	for r := 0; r < cfg.runs; r++ {
		for _, p := range paths {
			res, err := iperfRun(ctx, nsenter, iperf, p, cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
			p.results = append(p.results, res)
			fmt.Printf("  run %d  %-42s %6.2f Gbit/s  retransmits %-5d CPU client %3.0f%% server %3.0f%%\n",
				r+1, p.name, res.gbps, res.retransmits, res.cpuClient, res.cpuServer)
		}
	}

	fmt.Printf("\n%-44s %5s %14s %22s %12s\n", "path", "MTU", "median Gbit/s", "min..max Gbit/s", "retransmits")
	medians := map[string]float64{}
	for _, p := range paths {
		g := make([]float64, len(p.results))
		retr := 0
		for i, r := range p.results {
			g[i] = r.gbps
			retr += r.retransmits
		}
		m := median(g)
		medians[p.name] = m
		fmt.Printf("%-44s %5d %14.2f %10.2f .. %-9.2f %12d\n", p.name, p.mtu, m, slices.Min(g), slices.Max(g), retr)
	}
	direct, bridged, vxlan := medians[paths[0].name], medians[paths[1].name], medians[paths[2].name]
	fmt.Printf("\npod-to-pod across nodes (VXLAN overlay): %.2f Gbit/s = %.2f x the direct veth pair (%.2f Gbit/s); same-node pods: %.2f x\n",
		vxlan, ratio(vxlan, direct), direct, ratio(bridged, direct))
	fmt.Printf("(client and server share this machine's %d CPUs, so these are CPU-bound figures for the kernel's per-packet work, not link speeds)\n", runtime.NumCPU())
	return nil
}

// buildPaths sets up the three measured paths: a bare veth pair between two
// namespaces, two pods on one node (veth -> bridge -> veth), and two pods on
// two nodes (veth -> bridge -> VXLAN -> underlay veth -> VXLAN -> bridge -> veth).
func buildPaths(ctx context.Context, lab *netlab.Lab, dir string) ([]*path, error) {
	// Direct veth pair, default MTU.
	left, err := lab.NewNS()
	if err != nil {
		return nil, err
	}
	right, err := lab.NewNS()
	if err != nil {
		return nil, err
	}
	lh, err := lab.Handle(left)
	if err != nil {
		return nil, err
	}
	rh, err := lab.Handle(right)
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "veth0"
	if err := lh.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "veth0", PeerNamespace: netlink.NsFd(int(right.Fd()))}); err != nil {
		return nil, fmt.Errorf("veth pair: %w", err)
	}
	addrs := []netip.Addr{netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")}
	vethMTU := 0
	for i, h := range []*netlink.Handle{lh, rh} {
		l, err := h.LinkByName("veth0")
		if err != nil {
			return nil, err
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addrs[i].AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			return nil, err
		}
		if err := h.LinkSetUp(l); err != nil {
			return nil, err
		}
		vethMTU = l.Attrs().MTU
	}

	// Strata's pod network on two nodes.
	a, b, err := lab.TwoNodes(ctx, dir)
	if err != nil {
		return nil, err
	}
	podA, _, err := lab.AddPod(ctx, a, "bench-pod-a")
	if err != nil {
		return nil, err
	}
	podA2, ipA2, err := lab.AddPod(ctx, a, "bench-pod-a2")
	if err != nil {
		return nil, err
	}
	podB, ipB, err := lab.AddPod(ctx, b, "bench-pod-b")
	if err != nil {
		return nil, err
	}
	podMTU, err := linkMTU(lab, podA, "eth0")
	if err != nil {
		return nil, err
	}
	return []*path{
		{name: "direct veth pair (two netns)", client: left, server: right, serverIP: addrs[1], mtu: vethMTU},
		{name: "pod -> pod, same node (Strata bridge)", client: podA, server: podA2, serverIP: ipA2, mtu: podMTU},
		{name: "pod -> pod, across nodes (Strata VXLAN)", client: podA, server: podB, serverIP: ipB, mtu: podMTU},
	}, nil
}

func linkMTU(lab *netlab.Lab, n ns.NetNS, name string) (int, error) {
	h, err := lab.Handle(n)
	if err != nil {
		return 0, err
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().MTU, nil
}

// iperfRun starts an iperf3 server in p.server, runs the client in p.client
// against it and returns what the server received.
func iperfRun(ctx context.Context, nsenter, iperf string, p *path, cfg config) (result, error) {
	port := strconv.Itoa(iperfPort)
	srv := exec.CommandContext(ctx, nsenter, "--net="+p.server.Path(), "--", iperf, "-s", "-B", p.serverIP.String(), "-p", port)
	var srvOut strings.Builder
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := srv.Start(); err != nil {
		return result{}, fmt.Errorf("iperf3 server: %w", err)
	}
	defer func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	}()

	deadline := time.Now().Add(serverStartWait)
	for {
		args := []string{"--net=" + p.client.Path(), "--", iperf, "-c", p.serverIP.String(), "-p", port,
			"-t", strconv.Itoa(int(cfg.duration.Seconds())), "-P", strconv.Itoa(cfg.parallel), "-J"}
		out, err := exec.CommandContext(ctx, nsenter, args...).Output()
		res, perr := parseIperf(out)
		if err == nil && perr == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		// The server may not listen yet: retry a refused connection briefly.
		if time.Now().After(deadline) || !strings.Contains(string(out)+fmt.Sprint(perr), "refused") {
			return result{}, fmt.Errorf("iperf3 client: %v %v\n%s\nserver: %s", err, perr, out, srvOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parseIperf reads iperf3's JSON report (-J).
func parseIperf(out []byte) (result, error) {
	var rep struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			CPU struct {
				HostTotal   float64 `json:"host_total"`
				RemoteTotal float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return result{}, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if rep.Error != "" {
		return result{}, errors.New(rep.Error)
	}
	if rep.End.SumReceived.BitsPerSecond <= 0 {
		return result{}, errors.New("iperf3 reported no data received")
	}
	return result{
		gbps:        rep.End.SumReceived.BitsPerSecond / 1e9,
		retransmits: rep.End.SumSent.Retransmits,
		cpuClient:   rep.End.CPU.HostTotal,
		cpuServer:   rep.End.CPU.RemoteTotal,
	}, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func kernel() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}
