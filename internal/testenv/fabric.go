package testenv

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A Fabric is the tests' own small network: a bridge in the host's network
// namespace with an address of its own, and test hosts — network
// namespaces attached to it by veth pairs, each with an address on the
// fabric and a default route through the bridge's address. Test hosts are
// where multi-node tests run agents and where NodePorts and load balancers
// are tried from, so no test traffic ever leaves this machine.
//
// One fabric exists at a time (it is used under the agent lock); its names
// are fixed and a stale one is removed first.
type Fabric struct {
	Bridge  string
	Gateway netip.Prefix // the bridge's address on the fabric

	mu    sync.Mutex
	hosts []*Host
}

// A Host is a network namespace on a Fabric, with a mount namespace of
// its own that lives as long as the host (so that what a node mounts, such
// as its pods' network namespaces, survives the node's restarts, as on a
// real machine).
type Host struct {
	Name      string // the namespace's name (ip netns)
	NetnsPath string
	MountNS   string // a bind mount of the host's mount namespace
	IP        netip.Addr
}

const (
	fabricBridge = "strata-tb0"
	fabricPrefix = "strata-th-" // namespaces; their veths are th<N>
	// mountNSDir holds the hosts' mount namespaces: a private mount, as
	// persistent mount namespaces must not sit on a shared one.
	mountNSDir = "/run/strata-e2e-mnt"
)

var fabricGateway = netip.MustParsePrefix("10.99.0.1/24")

// NewFabric creates the fabric; it is removed (with its hosts) when t ends.
func NewFabric(t testing.TB) *Fabric {
	t.Helper()
	RequireHost(t)
	removeFabric()
	f := &Fabric{Bridge: fabricBridge, Gateway: fabricGateway}
	t.Cleanup(removeFabric)
	if err := os.MkdirAll(mountNSDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--bind", mountNSDir, mountNSDir},
		{"--make-private", mountNSDir},
	} {
		if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
			t.Fatalf("mount %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	for _, args := range [][]string{
		{"link", "add", f.Bridge, "type", "bridge"},
		{"addr", "add", f.Gateway.String(), "dev", f.Bridge},
		{"link", "set", f.Bridge, "up"},
	} {
		mustIP(t, args...)
	}
	// Bridged frames between test hosts pass the host's netfilter hooks
	// when br_netfilter is on; nothing there may drop them.
	return f
}

// AddHost attaches a new network namespace to the fabric.
func (f *Fabric) AddHost(t testing.TB, name string) *Host {
	t.Helper()
	f.mu.Lock()
	n := len(f.hosts) + 1
	f.mu.Unlock()
	addr := f.Gateway.Addr()
	for range 10 + n - 1 {
		addr = addr.Next()
	}
	h := &Host{Name: fabricPrefix + name, IP: addr}
	h.NetnsPath = filepath.Join("/run/netns", h.Name)
	outer := fmt.Sprintf("th%d", n)
	mustIP(t, "netns", "add", h.Name)
	for _, args := range [][]string{
		{"link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", h.Name},
		{"link", "set", outer, "master", f.Bridge},
		{"link", "set", outer, "up"},
		{"-n", h.Name, "link", "set", "lo", "up"},
		{"-n", h.Name, "addr", "add", netip.PrefixFrom(addr, f.Gateway.Bits()).String(), "dev", "eth0"},
		{"-n", h.Name, "link", "set", "eth0", "up"},
		{"-n", h.Name, "route", "add", "default", "via", f.Gateway.Addr().String()},
	} {
		mustIP(t, args...)
	}
	h.MountNS = filepath.Join(mountNSDir, h.Name)
	if err := os.WriteFile(h.MountNS, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("unshare", "--mount="+h.MountNS, "--propagation", "slave", "true").CombinedOutput(); err != nil {
		t.Fatalf("mount namespace for %s: %v: %s", h.Name, err, out)
	}
	f.mu.Lock()
	f.hosts = append(f.hosts, h)
	f.mu.Unlock()
	return h
}

// Command runs name in the host's network namespace (and nothing else of
// it: the file system and mounts are this machine's).
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.NetnsPath, "--", name}, args...)...)
}

// Run runs a command in the host's network namespace and returns its
// output; bounded by timeout.
func (h *Host) Run(timeout time.Duration, name string, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := h.Command(ctx, name, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s %s in %s timed out after %s: %w", name, strings.Join(args, " "), h.Name, timeout, err)
	} else if err != nil {
		err = fmt.Errorf("%s %s in %s: %w", name, strings.Join(args, " "), h.Name, err)
	}
	code := 0
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: code, Err: err, Duration: time.Since(began)}
}

// Delete removes the host's namespaces: every process left in them loses
// its network, as if the machine had been unplugged.
func (h *Host) Delete() error {
	if h.MountNS != "" {
		_ = syscall.Unmount(h.MountNS, syscall.MNT_DETACH)
		_ = os.Remove(h.MountNS)
	}
	out, err := exec.Command("ip", "netns", "delete", h.Name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("ip netns delete %s: %v: %s", h.Name, err, out)
	}
	return nil
}

func removeFabric() {
	_ = exec.Command("ip", "link", "delete", fabricBridge).Run()
	// A host's namespace outlives its name while processes of an earlier,
	// killed run still use it: its veth must go by name too.
	for n := 1; n <= 16; n++ {
		_ = exec.Command("ip", "link", "delete", fmt.Sprintf("th%d", n)).Run()
	}
	if entries, err := os.ReadDir(mountNSDir); err == nil {
		for _, e := range entries {
			_ = syscall.Unmount(filepath.Join(mountNSDir, e.Name()), syscall.MNT_DETACH)
		}
		_ = syscall.Unmount(mountNSDir, syscall.MNT_DETACH)
		_ = os.RemoveAll(mountNSDir)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), fabricPrefix) {
			_ = exec.Command("ip", "netns", "delete", e.Name()).Run()
		}
	}
}

func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}
