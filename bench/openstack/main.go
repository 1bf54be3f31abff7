// Command openstack measures Strata's OpenStack compute face on one node
// (issue 7) and prints figures; it never fails on them.
//
//	go run ./bench/openstack -bin bin/strata [-servers 1000] [-boots 5]   # as root
//
// The server runs with its node agent through bench/benchenv (the host-wide
// node agent lock, node Ready, cleanup). The clients are gophercloud/v2
// (the Go SDK Terraform's OpenStack provider uses) authenticated with the
// admin's openrc (`strata openrc`), and the real `openstack` CLI when it is
// installed.
//
//  1. Create -> ACTIVE, Nova against Kubernetes, in the same run: -boots
//     times each, alternating, one at a time, the test VM image
//     (internal/vm/testimage) with a 1 vCPU flavor:
//     - Nova: POST /servers (gophercloud servers.Create, networks "auto"),
//     then GET /servers/{id} every 100 ms until status ACTIVE;
//     - Kubernetes: the same VirtualMachine created through the API (what
//     `kubectl apply` sends), watched until phase Running.
//     Nova's ACTIVE is the VirtualMachine's Running, so the ratio is the
//     API's own cost. Each VM is deleted before the next.
//  2. `server list` with -servers servers: that many VirtualMachines with
//     runStrategy Halted (no pods: "hollow"), made through the Kubernetes
//     API; then the latency of GET /servers/detail (every page, as
//     gophercloud's AllPages and `openstack server list` fetch them), 10
//     times, the real `openstack server list` 3 times (a Python program:
//     ~1-2 s of it is its own start-up, printed apart as `openstack
//     --version`), and `kubectl get vm` 3 times beside them.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
)

const (
	// namespace is the admin project's: `strata openrc` scopes to it.
	namespace   = "admin"
	imageName   = "bench-os"
	flavorName  = "bench-os"
	memoryMiB   = 96
	hollowLabel = "bench.strata.io/hollow"
	lockTimeout = 30 * time.Minute
)

var (
	vmGVR     = computev1alpha1.GroupVersion.WithResource("virtualmachines")
	flavorGVR = computev1alpha1.GroupVersion.WithResource("flavors")
)

type config struct {
	bin      string
	servers  int
	boots    int
	keep     bool
	lockWait time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.IntVar(&cfg.servers, "servers", 1000, "hollow servers (Halted VMs) for the list latency")
	flag.IntVar(&cfg.boots, "boots", 5, "servers booted through each API, one at a time")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir")
	flag.DurationVar(&cfg.lockWait, "lock-wait", lockTimeout, "how long to wait for another node agent (an e2e test) on this host to finish")
	flag.Parse()
	if cfg.servers < 1 || cfg.boots < 0 {
		fmt.Fprintln(os.Stderr, "openstack bench: -servers must be at least 1, -boots at least 0")
		os.Exit(2)
	}
	benchenv.Main("openstack", func(ctx context.Context) error { return run(ctx, cfg) })
}

type bench struct {
	cfg     config
	node    *benchenv.Node
	dyn     dynamic.Interface
	env     map[string]string
	compute *gophercloud.ServiceClient
}

func run(ctx context.Context, cfg config) (err error) {
	node, err := benchenv.StartNode(benchenv.NodeOptions{Bench: "openstack", Bin: cfg.bin, Keep: cfg.keep, LockWait: cfg.lockWait})
	if err != nil {
		return err
	}
	defer func() { node.Close(err) }()
	b := &bench{cfg: cfg, node: node}
	if b.dyn, err = dynamic.NewForConfig(node.REST); err != nil {
		return err
	}
	if b.env, err = openrc(ctx, node.Bin, node.DataDir()); err != nil {
		return err
	}
	if b.compute, err = computeClient(ctx, b.env); err != nil {
		return err
	}
	if cfg.boots > 0 {
		if err := b.createToActive(ctx); err != nil {
			return node.CheckRunning(err)
		}
	}
	return node.CheckRunning(b.serverList(ctx))
}

// openrc runs `strata openrc` and returns its variables.
func openrc(ctx context.Context, bin, dataDir string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, bin, "openrc", "--data-dir", dataDir)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("strata openrc: %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if ok && !strings.HasPrefix(line, "#") {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env, nil
}

// computeClient authenticates as env's user and returns Nova's client.
func computeClient(ctx context.Context, env map[string]string) (*gophercloud.ServiceClient, error) {
	ca, err := os.ReadFile(env["OS_CACERT"])
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	pc, err := openstack.NewClient(env["OS_AUTH_URL"])
	if err != nil {
		return nil, err
	}
	pc.HTTPClient = http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 8}}
	if err := openstack.Authenticate(ctx, pc, gophercloud.AuthOptions{
		IdentityEndpoint: env["OS_AUTH_URL"], Username: env["OS_USERNAME"], Password: env["OS_PASSWORD"],
		DomainName: "Default", TenantName: env["OS_PROJECT_NAME"], AllowReauth: true,
	}); err != nil {
		return nil, fmt.Errorf("authenticate: %w", err)
	}
	c, err := openstack.NewComputeV2(pc, gophercloud.EndpointOpts{})
	if err != nil {
		return nil, err
	}
	c.Microversion = "2.79"
	return c, nil
}

func vmObject(name string, spec computev1alpha1.VirtualMachineSpec, labels map[string]string) (*unstructured.Unstructured, error) {
	vm := &computev1alpha1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       spec,
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(vm)
	return &unstructured.Unstructured{Object: obj}, err
}

// createToActive boots servers through Nova and VMs through Kubernetes,
// alternating, and prints the times to ACTIVE / Running.
func (b *bench) createToActive(ctx context.Context) error {
	fmt.Printf("\n1. create -> ACTIVE (Nova) and create -> Running (Kubernetes), %d each, one at a time\n", b.cfg.boots)
	if _, err := benchenv.UploadTestVMImage(ctx, b.dyn, b.node.Bin, b.node.DataDir(), filepath.Join(b.node.Dir, "image"), namespace, imageName); err != nil {
		return err
	}
	fl, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&computev1alpha1.Flavor{
		TypeMeta:   metav1.TypeMeta{APIVersion: computev1alpha1.GroupVersion.String(), Kind: "Flavor"},
		ObjectMeta: metav1.ObjectMeta{Name: flavorName},
		Spec:       computev1alpha1.FlavorSpec{VCPUs: 1, RAMMiB: memoryMiB},
	})
	if err != nil {
		return err
	}
	if _, err := b.dyn.Resource(flavorGVR).Create(ctx, &unstructured.Unstructured{Object: fl}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("flavor: %w", err)
	}
	imageID, err := b.imageID(ctx)
	if err != nil {
		return err
	}
	var nova, kube []time.Duration
	for i := range b.cfg.boots + 1 {
		// Round 0 is a warm-up (the node pulls the image's artifact).
		d, err := b.bootNova(ctx, fmt.Sprintf("os-%d", i), imageID)
		if err != nil {
			return err
		}
		k, err := b.bootKube(ctx, fmt.Sprintf("kube-%d", i))
		if err != nil {
			return err
		}
		if i == 0 {
			fmt.Printf("  warm-up: Nova %.2f s, Kubernetes %.2f s\n", d.Seconds(), k.Seconds())
			continue
		}
		fmt.Printf("  round %d: Nova %.2f s, Kubernetes %.2f s\n", i, d.Seconds(), k.Seconds())
		nova, kube = append(nova, d), append(kube, k)
	}
	pn, pk := benchenv.Percentile(nova, 50), benchenv.Percentile(kube, 50)
	fmt.Printf("  create -> ACTIVE via Nova p50 %.2f s (max %.2f), create -> Running via Kubernetes p50 %.2f s (max %.2f): ratio %.2f\n",
		pn.Seconds(), benchenv.Percentile(nova, 100).Seconds(), pk.Seconds(), benchenv.Percentile(kube, 100).Seconds(), pn.Seconds()/pk.Seconds())
	return nil
}

// imageID is the Glance ID of the uploaded image: the Image's UID.
func (b *bench) imageID(ctx context.Context) (string, error) {
	u, err := b.dyn.Resource(benchenv.ImageGVR).Namespace(namespace).Get(ctx, imageName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	return string(u.GetUID()), nil
}

func (b *bench) bootNova(ctx context.Context, name, imageID string) (time.Duration, error) {
	began := time.Now()
	srv, err := servers.Create(ctx, b.compute, servers.CreateOpts{Name: name, FlavorRef: flavorName, ImageRef: imageID, Networks: "auto"}, nil).Extract()
	if err != nil {
		return 0, fmt.Errorf("nova create %s: %w", name, err)
	}
	defer servers.Delete(context.Background(), b.compute, srv.ID)
	for {
		s, err := servers.Get(ctx, b.compute, srv.ID).Extract()
		if err != nil {
			return 0, fmt.Errorf("nova get %s: %w", name, err)
		}
		switch s.Status {
		case "ACTIVE":
			d := time.Since(began)
			return d, b.waitGone(ctx, name)
		case "ERROR":
			return 0, fmt.Errorf("server %s: ERROR: %v", name, s.Fault)
		}
		if time.Since(began) > 3*time.Minute {
			return 0, fmt.Errorf("server %s: %s after 3 minutes", name, s.Status)
		}
		if err := benchenv.Sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

func (b *bench) bootKube(ctx context.Context, name string) (time.Duration, error) {
	obj, err := vmObject(name, computev1alpha1.VirtualMachineSpec{Flavor: flavorName, Image: imageName}, nil)
	if err != nil {
		return 0, err
	}
	vms := b.dyn.Resource(vmGVR).Namespace(namespace)
	began := time.Now()
	created, err := vms.Create(ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("create vm %s: %w", name, err)
	}
	defer vms.Delete(context.Background(), name, metav1.DeleteOptions{})
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	w, err := vms.Watch(wctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name, ResourceVersion: created.GetResourceVersion()})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if ev.Type != watch.Modified && ev.Type != watch.Added {
			continue
		}
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		if phase, _, _ := unstructured.NestedString(u.Object, "status", "phase"); phase == "Running" {
			d := time.Since(began)
			vms.Delete(ctx, name, metav1.DeleteOptions{})
			return d, b.waitGone(ctx, name)
		}
	}
	return 0, fmt.Errorf("vm %s: not Running after 3 minutes", name)
}

// waitGone deletes VM name and waits until it and its launcher pod are
// gone, so the next boot has the node to itself.
func (b *bench) waitGone(ctx context.Context, name string) error {
	vms := b.dyn.Resource(vmGVR).Namespace(namespace)
	_ = vms.Delete(ctx, name, metav1.DeleteOptions{})
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		_, err := vms.Get(ctx, name, metav1.GetOptions{})
		_, perr := b.node.Client.CoreV1().Pods(namespace).Get(ctx, "vm-"+name, metav1.GetOptions{})
		if err != nil && perr != nil {
			return nil
		}
		if err := benchenv.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return fmt.Errorf("vm %s: not gone after 2 minutes", name)
}

// serverList makes the hollow servers and times the lists.
func (b *bench) serverList(ctx context.Context) error {
	n := b.cfg.servers
	fmt.Printf("\n2. server list with %d servers (VirtualMachines with runStrategy Halted)\n", n)
	began := time.Now()
	vms := b.dyn.Resource(vmGVR).Namespace(namespace)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				obj, err := vmObject(fmt.Sprintf("hollow-%04d", i), computev1alpha1.VirtualMachineSpec{
					Flavor: flavorName, Image: imageName, RunStrategy: computev1alpha1.RunStrategyHalted,
				}, map[string]string{hollowLabel: "true"})
				if err == nil {
					_, err = vms.Create(ctx, obj, metav1.CreateOptions{})
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("hollow servers: %w", err)
	}
	fmt.Printf("  %d VirtualMachines created in %.1f s\n", n, time.Since(began).Seconds())

	var api []time.Duration
	for i := range 10 {
		t0 := time.Now()
		pages, err := servers.List(b.compute, servers.ListOpts{}).AllPages(ctx)
		if err != nil {
			return fmt.Errorf("servers/detail: %w", err)
		}
		all, err := servers.ExtractServers(pages)
		if err != nil {
			return err
		}
		d := time.Since(t0)
		if i == 0 {
			fmt.Printf("  GET /servers/detail returned %d servers\n", len(all))
			if len(all) < n {
				return fmt.Errorf("servers/detail lists %d servers, want at least %d", len(all), n)
			}
		}
		api = append(api, d)
	}
	fmt.Printf("  GET /servers/detail (all pages, gophercloud): p50 %.0f ms, max %.0f ms\n",
		ms(benchenv.Percentile(api, 50)), ms(benchenv.Percentile(api, 100)))

	kube := timeCommand(ctx, 3, nil, "kubectl", "--kubeconfig", b.node.Kubeconfig(), "get", "vm", "-n", namespace, "--no-headers")
	fmt.Printf("  kubectl get vm: p50 %.0f ms\n", ms(kube))
	if _, err := exec.LookPath("openstack"); err != nil {
		fmt.Printf("  openstack server list: the openstack CLI is not installed (hack/install-deps.sh installs it)\n")
		return nil
	}
	env := os.Environ()
	for k, v := range b.env {
		env = append(env, k+"="+v)
	}
	start := timeCommand(ctx, 3, env, "openstack", "--version")
	cli := timeCommand(ctx, 3, env, "openstack", "server", "list", "-f", "value", "-c", "ID")
	fmt.Printf("  openstack server list: p50 %.0f ms (the CLI's own start-up, openstack --version: %.0f ms)\n", ms(cli), ms(start))
	return nil
}

// timeCommand runs a command n times and returns its median wall time
// (-1 s when it fails).
func timeCommand(ctx context.Context, n int, env []string, name string, args ...string) time.Duration {
	var ds []time.Duration
	for range n {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Env = env
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("  %s %s: %v: %.300s\n", name, strings.Join(args, " "), err, out)
			return -time.Second
		}
		ds = append(ds, time.Since(t0))
	}
	return benchenv.Percentile(ds, 50)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
