// Command vmmigrate measures live migration of a running VM between two
// nodes (issue 5: "Live migration time and downtime for a 256 MiB guest
// between two netns nodes"). It prints figures and never fails on them.
//
//	go run ./bench/vmmigrate -bin bin/strata [-runs 5] [-memory-mib 256] [-settle 10s] [-keep]   # as root
//
// Like the multi-node e2e tests (test/e2e/multinode_test.go) it starts,
// through internal/testenv, the test fabric (a bridge and a network
// namespace per test host), a control-plane server and three agents,
// node-1..3, each in its own network and mount namespace, joined with a
// bootstrap token; internal/testenv's functions take a testing.TB, which
// bench/benchenv.TB provides outside `go test`. It waits (-lock-wait) for
// the host-wide node agent lock first, so it never runs beside an e2e
// test's nodes or another node bench.
//
// It uploads the e2e tests' test VM (internal/vm/testimage, `strata image
// upload`), boots one VM (Flavor bench-vmmigrate: 1 vCPU, -memory-mib of
// RAM) on the node the scheduler picks, and waits for its console marker
// and DHCP lease. A busybox pod on a third node — neither the source nor
// the target — then asks the VM's HTTP server (the test image's httpd) for
// its page five times a second, logging "<uptime> ok|fail" per try, as the
// migration e2e test (test/e2e/vmmigrate_test.go) does. After -settle, the
// VM is migrated -runs times back and forth between its first node and
// another one: a VirtualMachineMigration with spec.targetNode, as `strata
// vm migrate --to` creates. Per run:
//   - client total: this client's clock from just before the create call
//     to the first Get (polled every 100 ms) that shows phase Succeeded;
//   - QEMU total (status.totalMillis: the disks' mirror, measured by the
//     source node, plus QEMU's own migration time) and QEMU's downtime
//     (status.downtimeMillis: how long the guest was paused for the
//     switch; QEMU's default downtime limit, which Strata keeps, is 300 ms);
//   - memory moved (status.progress.memoryTransferredBytes) and passes over
//     guest memory (left out while the status reports 0), and the disk
//     bytes mirrored;
//   - longest outage: the longest time between two answered tries of the
//     pinger in the window from the create call to 3 s after the VM
//     runs on its new node (pinger's clock, /proc/uptime: the machine's).
//     A try takes one wget (1 s timeout) and a 0.2 s sleep, so an
//     uninterrupted VM already shows gaps of ~0.2-0.3 s (printed as the
//     usual gap); the outage includes the network's switch to the new node
//     (routes, ARP), not just QEMU's pause.
//
// Then p50 and max of each over the runs. The next run starts -settle after
// the previous one ended.
//
// Everything is deleted at the end, also on error or Ctrl-C: the VM (before
// the server stops), the pinger, the Flavor, then the agents, the server,
// the fabric and the temporary dir (unless -keep).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
	"github.com/strata-cloud/strata/internal/testenv"
)

const (
	namespace   = "bench-vmmigrate"
	imageName   = "bench-vmmigrate"
	flavorName  = "bench-vmmigrate"
	vmName      = "mig"
	pingerName  = "pinger"
	hostBusybox = "/bin/busybox"
	busyboxRef  = "docker.io/library/busybox:bench"
	// afterMove is how long the pinger keeps trying once the VM runs on
	// its new node, before its log is read.
	afterMove = 3 * time.Second
)

var nodeNames = []string{"node-1", "node-2", "node-3"}

type config struct {
	bin         string
	runs        int
	memoryMiB   int64
	settle      time.Duration
	bootTimeout time.Duration
	migTimeout  time.Duration
	keep        bool
	lockWait    time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.IntVar(&cfg.runs, "runs", 5, "migrations, back and forth between two nodes")
	flag.Int64Var(&cfg.memoryMiB, "memory-mib", 256, "guest RAM of the VM (MiB)")
	flag.DurationVar(&cfg.settle, "settle", 10*time.Second, "how long the VM runs before the first migration and between migrations")
	flag.DurationVar(&cfg.bootTimeout, "boot-timeout", 5*time.Minute, "how long the VM may take to boot and get its address")
	flag.DurationVar(&cfg.migTimeout, "migration-timeout", 5*time.Minute, "how long one migration may take")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary dir (data dirs and logs of the server and agents)")
	flag.DurationVar(&cfg.lockWait, "lock-wait", 30*time.Minute, "how long to wait for another node agent (an e2e test) on this host to finish")
	flag.Parse()
	if cfg.runs < 1 || cfg.memoryMiB < 80 {
		fmt.Fprintln(os.Stderr, "vmmigrate bench: want -runs >= 1, -memory-mib >= 80 (the test image needs ~76 MiB)")
		os.Exit(2)
	}
	benchenv.Main("vmmigrate", func(ctx context.Context) error { return run(ctx, cfg) })
}

// cluster is the server and its three nodes.
type cluster struct {
	srv    *testenv.Server
	agents map[string]*testenv.Agent
	cs     kubernetes.Interface
	dyn    dynamic.Interface
}

func run(ctx context.Context, cfg config) (err error) {
	if err := testenv.CheckHost(); err != nil {
		return err
	}
	bin, err := filepath.Abs(cfg.bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("strata binary: %w (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "strata-bench-vmmigrate-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			fmt.Printf("temporary dir kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	fmt.Printf("strata vmmigrate benchmark\n  binary: %s\n  cpus: %d   load average: %s\n", bin, runtime.NumCPU(), benchenv.LoadAverage())

	// testenv.Start waits only a few minutes for the lock: wait here as
	// long as asked until it is free, then let Start take it.
	fmt.Printf("waiting for the host-wide node agent lock (no e2e node runs beside this bench) ...\n")
	began := time.Now()
	release, err := testenv.AcquireAgentLock(cfg.lockWait)
	if err != nil {
		return err
	}
	release()

	tb := benchenv.NewTB("vmmigrate", dir)
	defer func() {
		if err != nil && ctx.Err() == nil {
			tb.Fail() // testenv's cleanups print the server's and agents' logs
		}
		fmt.Printf("stopping the agents and the server, removing the fabric ...\n")
		tb.Close()
	}()
	c := &cluster{agents: map[string]*testenv.Agent{}}
	if err := tb.Do(func() { c.start(tb, bin) }); err != nil {
		return fmt.Errorf("start the server and its nodes: %w", err)
	}
	fmt.Printf("server and %d nodes Ready %.1f s after asking for the lock\n", len(nodeNames), time.Since(began).Seconds())
	rc, err := clientcmd.BuildConfigFromFlags("", c.srv.Kubeconfig())
	if err != nil {
		return err
	}
	if c.cs, err = kubernetes.NewForConfig(rc); err != nil {
		return err
	}
	if c.dyn, err = dynamic.NewForConfig(rc); err != nil {
		return err
	}
	// Before the server stops (cleanups run last first): the controller
	// would recreate a deleted launcher pod of a VM that is left.
	tb.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := c.cleanup(cctx); err != nil {
			fmt.Fprintf(os.Stderr, "deleting the bench's objects: %v\n", err)
		}
	})

	b := &bench{cluster: c, cfg: cfg}
	if err := b.prepare(ctx, bin, filepath.Join(dir, "vmimage")); err != nil {
		return err
	}
	if err := b.bootVM(ctx); err != nil {
		return err
	}
	if err := b.startPinger(ctx, tb, filepath.Join(dir, "busybox.tar")); err != nil {
		return err
	}

	var runs []*migRun
	defer func() {
		if len(runs) > 0 {
			printRuns(cfg, b.usualGap(), runs)
		}
		fmt.Printf("load average now: %s\n\n", benchenv.LoadAverage())
	}()
	a, z := b.home, b.away
	for i := range cfg.runs {
		fmt.Printf("VM running, waiting %s ...\n", cfg.settle)
		if err := benchenv.Sleep(ctx, cfg.settle); err != nil {
			return err
		}
		r, err := b.migrate(ctx, i+1, a, z)
		if r != nil {
			runs = append(runs, r)
			fmt.Printf("  %s\n", r.line())
		}
		if err != nil {
			return fmt.Errorf("migration %d (%s -> %s): %w", i+1, a, z, err)
		}
		a, z = z, a
	}
	return nil
}

// start starts the fabric, the server and three agents, and waits for the
// nodes.
func (c *cluster) start(tb *benchenv.TB, bin string) {
	fabric := testenv.NewFabric(tb)
	c.srv = testenv.Start(tb, testenv.Options{Bin: bin, Multinode: true})
	for _, name := range nodeNames {
		c.agents[name] = c.srv.StartAgent(tb, fabric.AddHost(tb, name), name)
	}
	c.srv.WaitNodesReady(tb, 3*time.Minute, nodeNames...)
}

// importBusybox loads the busybox image (from the host's static busybox)
// into the node's containerd.
func (c *cluster) importBusybox(tb *benchenv.TB, node, archive string) error {
	img, err := ociimage.Busybox(hostBusybox)
	if err != nil {
		return fmt.Errorf("busybox image from %s (install busybox-static): %w", hostBusybox, err)
	}
	if err := ociimage.WriteTarball(archive, busyboxRef, img); err != nil {
		return err
	}
	return tb.Do(func() { c.agents[node].ImportImage(tb, archive) })
}

// others are the nodes other than those named.
func others(names ...string) []string {
	return slices.DeleteFunc(slices.Clone(nodeNames), func(n string) bool { return slices.Contains(names, n) })
}

func mib(bytes int64) string { return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20)) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
