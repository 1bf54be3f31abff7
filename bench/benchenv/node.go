package benchenv

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strata-cloud/strata/internal/testenv"
)

// The node benches (bench/pods, bench/vm) run `strata server` with its node
// agent through internal/testenv, the e2e tests' code: the host-wide lock
// that keeps one node agent per host, free ports, a temporary data dir,
// the wait for the node to be Ready and, at the end, the deletion of the
// workloads, the server's stop, and the cleanup of what its containers
// left behind.

// NodeOptions say how to start a node bench's server.
type NodeOptions struct {
	Bench    string        // the bench's name, in its temporary dir's and kept log's names
	Bin      string        // the strata binary
	Keep     bool          // keep the temporary dir (and a copy of the server's log)
	LockWait time.Duration // how long to wait for another node agent on this host
}

// Node is a running agent-backed server for a bench.
type Node struct {
	*testenv.Server
	opts NodeOptions
	// Bin is the absolute path of the strata binary.
	Bin string
	// Dir is the bench's temporary directory (the server's data dir is
	// below it): a place for files the bench makes.
	Dir string
	// Name is the node's name.
	Name string
	// REST is the admin's client config (QPS 1000, protobuf), Client a
	// clientset made from it.
	REST   *rest.Config
	Client kubernetes.Interface
}

// StartNode prints the bench's header, takes the host-wide node agent lock,
// starts the server with its agent and waits until the node is Ready. On
// error it has cleaned up after itself; otherwise end the node with Close.
func StartNode(opts NodeOptions) (n *Node, err error) {
	if err := testenv.CheckHost(); err != nil {
		return nil, err
	}
	bin, err := filepath.Abs(opts.Bin)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("strata binary: %w (run `make build` first)", err)
	}
	dir, err := os.MkdirTemp("", "strata-bench-"+opts.Bench+"-")
	if err != nil {
		return nil, err
	}
	n = &Node{opts: opts, Bin: bin, Dir: dir}
	defer func() {
		if err != nil {
			n.Close(err)
			n = nil
		}
	}()
	fmt.Printf("strata %s benchmark\n  binary: %s\n  cpus: %d   load average: %s\n", opts.Bench, bin, runtime.NumCPU(), LoadAverage())
	fmt.Printf("waiting for the host-wide node agent lock (no e2e node runs beside this bench) ...\n")
	began := time.Now()
	n.Server, err = testenv.StartShared(testenv.Options{
		Bin: bin, DataDir: filepath.Join(dir, "data"), WithAgent: true, AgentLockTimeout: opts.LockWait,
	})
	if err != nil {
		return n, fmt.Errorf("start server: %w", err)
	}
	if n.Name, err = n.AwaitNodeReady(began, 0); err != nil {
		return n, fmt.Errorf("node Ready: %w", err)
	}
	fmt.Printf("server pid %d, node %s Ready (%.1f s after asking for the lock) in %s\n", n.PID(), n.Name, time.Since(began).Seconds(), n.DataDir())
	if n.REST, err = clientcmd.BuildConfigFromFlags("", n.Kubeconfig()); err != nil {
		return n, err
	}
	n.REST.QPS, n.REST.Burst = 1000, 2000
	n.REST.ContentType = "application/vnd.kubernetes.protobuf"
	if n.Client, err = kubernetes.NewForConfig(n.REST); err != nil {
		return n, err
	}
	return n, nil
}

// Close ends the node: it deletes the workloads, stops the server, kills
// what is left of its containers, unmounts and releases the lock, then
// removes the temporary dir unless Keep. When the bench failed (failure
// is its error), it prints the tail of the server's log and keeps a copy
// of the log in $TMPDIR.
func (n *Node) Close(failure error) {
	defer func() {
		if n.opts.Keep {
			fmt.Printf("data dir kept in %s\n", n.Dir)
			return
		}
		os.RemoveAll(n.Dir)
	}()
	if n.Server == nil {
		return
	}
	// The server's log goes with the server's own temporary dir: copy it
	// first.
	if failure != nil || n.opts.Keep {
		keep := filepath.Join(os.TempDir(), fmt.Sprintf("strata-bench-%s-%s.log", n.opts.Bench, time.Now().Format("20060102-150405")))
		if data, rerr := os.ReadFile(n.LogPath()); rerr == nil && os.WriteFile(keep, data, 0o644) == nil {
			fmt.Fprintf(os.Stderr, "server log kept in %s\n", keep)
		}
	}
	if failure != nil {
		fmt.Fprintf(os.Stderr, "server log tail:\n%s\n", LogTail(n.LogPath(), 30))
	}
	fmt.Printf("stopping the server and cleaning up ...\n")
	if err := n.Server.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "cleanup: %.2000s\n", err)
	}
}

// CheckRunning wraps err, a failed step's, with the server's state when the
// server is gone.
func (n *Node) CheckRunning(err error) error {
	if rerr := n.Server.CheckRunning(); rerr != nil {
		return fmt.Errorf("the server is gone (%v): %w", rerr, err)
	}
	return err
}

// CreateNamespace creates namespace ns (it may exist) and waits for its
// default service account: pods are refused until it exists.
func (n *Node) CreateNamespace(ctx context.Context, ns string) error {
	return CreateNamespace(ctx, n.Client, ns)
}

// CreateNamespace creates namespace ns through cs (it may exist) and waits
// for its default service account.
func CreateNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service account %s/default: %w", ns, err)
		}
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// WatchPods calls fn with every pod of namespace the watch reports and the time it
// arrived, from resourceVersion on, re-opening the watch if the server
// closes it, until ctx is done.
func WatchPods(ctx context.Context, cs kubernetes.Interface, namespace, selector, rv string, fn func(*corev1.Pod, time.Time)) error {
	for {
		w, err := cs.CoreV1().Pods(namespace).Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for ev := range w.ResultChan() {
			at := time.Now()
			switch ev.Type {
			case watch.Error:
				w.Stop()
				return fmt.Errorf("watch error: %v", apierrors.FromObject(ev.Object))
			case watch.Added, watch.Modified, watch.Bookmark:
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				rv = p.ResourceVersion
				if ev.Type != watch.Bookmark {
					fn(p, at)
				}
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// Sleep waits d, or less if ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// LogTail returns the last n lines of the file at path.
func LogTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(data, n)
}

// Percentile is the nearest-rank p-th percentile (p in (0, 100]) of xs
// (durations, sizes); 0 for none.
func Percentile[T cmp.Ordered](xs []T, p float64) T {
	if len(xs) == 0 {
		var zero T
		return zero
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[max(0, min(rank, len(s)-1))]
}

// Verdict says whether a target was met.
func Verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// Cmdline is pid's command line, nil when it cannot be read.
func Cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}
