// Command api measures the Kubernetes API of `strata server` under load —
// ConfigMap create, get, list and update from N client-go clients — and,
// as a baseline in the same run, raw put, get and range against the same
// embedded etcd. It prints throughput and latency tables and the
// apiserver/etcd ratios; it never fails on the figures.
//
//	go run ./bench/api -bin bin/strata [-duration 6s] [-clients 1,8,32]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strata-cloud/strata/bench/benchenv"
)

const (
	readyTimeout     = 3 * time.Minute
	stopTimeout      = 60 * time.Second
	mutatingTarget   = 100 * time.Millisecond
	payloadBytes     = 128 // ConfigMap data size: "small"
	benchLabel       = "strata.io/bench"
	clientQPS        = 5000
	clientBurst      = 10000
	protobufMIMEType = "application/vnd.kubernetes.protobuf"
)

type config struct {
	bin         string
	duration    time.Duration
	clients     []int
	listSize    int
	contentType string
	keep        bool
}

func main() {
	var cfg config
	var clients string
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.DurationVar(&cfg.duration, "duration", 6*time.Second, "length of each measured phase (7 phases per concurrency level)")
	flag.StringVar(&clients, "clients", "1,8,32", "comma-separated concurrency levels")
	flag.IntVar(&cfg.listSize, "list-size", 100, "ConfigMaps in the listed namespace (and keys in the etcd range)")
	flag.StringVar(&cfg.contentType, "content-type", protobufMIMEType, "client-go wire format: "+protobufMIMEType+" or application/json")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir and server log")
	flag.Parse()
	for _, s := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "api bench: -clients: %q is not a positive number\n", s)
			os.Exit(2)
		}
		cfg.clients = append(cfg.clients, n)
	}

	benchenv.Main("api", func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) (err error) {
	began := time.Now()
	root, err := os.MkdirTemp("", "strata-bench-api-")
	if err != nil {
		return err
	}
	defer func() {
		if cfg.keep {
			fmt.Printf("data dir and server log kept in %s\n", root)
			return
		}
		os.RemoveAll(root)
	}()

	srv, err := benchenv.Start(benchenv.Options{
		Bin:     cfg.bin,
		DataDir: filepath.Join(root, "data"),
		LogPath: filepath.Join(root, "server.log"),
	})
	if err != nil {
		return err
	}
	defer func() {
		took, stopErr := srv.Stop(stopTimeout)
		if stopErr != nil {
			fmt.Fprintln(os.Stderr, "api bench: server stop:", stopErr)
			err = errors.Join(err, stopErr)
			return
		}
		fmt.Printf("\nserver stopped (SIGTERM -> exit 0 in %.2f s); total bench time %s\n", took.Seconds(), time.Since(began).Round(time.Second))
	}()
	ready, err := srv.WaitReady(ctx, 50*time.Millisecond, readyTimeout)
	if err != nil {
		return err
	}
	maxN := 0
	for _, n := range cfg.clients {
		maxN = max(maxN, n)
	}

	b, err := newBench(ctx, srv, cfg, maxN)
	if err != nil {
		return err
	}
	defer b.close()
	defer func() {
		// A fresh context: clean up even after an interrupt.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil {
			fmt.Fprintln(os.Stderr, "api bench: cleanup:", cerr)
		}
	}()
	if err := b.setup(ctx); err != nil {
		return err
	}

	fmt.Printf("strata API benchmark\n")
	fmt.Printf("  binary: %s   cpus: %d (bench clients and server share them)   load average: %s   server ready in %.2f s\n",
		cfg.bin, runtime.NumCPU(), benchenv.LoadAverage(), ready.Seconds())
	fmt.Printf("  phases: %s each; levels: %v clients; client-go %s, QPS %d burst %d, one connection per client\n",
		cfg.duration, cfg.clients, cfg.contentType, clientQPS, clientBurst)
	fmt.Printf("  ConfigMap payload %d B (stored in etcd as %d B); list = %d ConfigMaps in one namespace\n",
		payloadBytes, b.valueSize, b.listCount)
	fmt.Printf("  etcd baseline: same embedded etcd over mTLS, one clientv3 client per goroutine, %d B values, range = %d keys under %s\n\n",
		b.valueSize, b.listCount, b.prefix)

	var results []result
	for _, n := range cfg.clients {
		for _, p := range b.phases(n) {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.warmUp(ctx, p.side, n); err != nil {
				return fmt.Errorf("warm-up of %d %s clients: %w", n, p.side, err)
			}
			r := runPhase(ctx, p, n, cfg.duration)
			fmt.Fprintf(os.Stderr, "  %-4s %-6s N=%-3d %8.0f ops/s  p50 %7.2f ms  p99 %7.2f ms  errors %d\n",
				r.side, r.op, r.n, r.throughput(), ms(r.quantile(0.50)), ms(r.quantile(0.99)), r.errors)
			results = append(results, r)
		}
		if err := b.afterLevel(ctx); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	fmt.Printf("\nload average at the end: %s\n\n", benchenv.LoadAverage())
	report(os.Stdout, results, cfg.clients)
	return nil
}

// bench holds the clients and the objects the phases work on.
type bench struct {
	cfg       config
	kube      []kubernetes.Interface // one per client, each with its own connection
	etcd      []*clientv3.Client     // one per goroutine
	runID     string
	writeNS   string // created and updated ConfigMaps
	listNS    string // the listed ConfigMaps
	listNames []string
	listCount int
	prefix    string   // etcd key prefix of this run
	listKeys  []string // etcd keys of the range
	value     string   // etcd value of valueSize bytes
	valueSize int
	updated   []*corev1.ConfigMap // each client's own object for update, latest version
	level     int                 // index of the current concurrency level, for unique names
}

func newBench(ctx context.Context, srv *benchenv.Server, cfg config, maxN int) (*bench, error) {
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	runID := hex.EncodeToString(id)
	b := &bench{
		cfg:     cfg,
		runID:   runID,
		writeNS: "strata-bench-" + runID,
		listNS:  "strata-bench-list-" + runID,
		prefix:  "/bench/" + runID + "/",
	}
	for range maxN {
		rc, err := srv.RESTConfig()
		if err != nil {
			return nil, err
		}
		rc.QPS, rc.Burst = clientQPS, clientBurst
		rc.ContentType = cfg.contentType
		rc.Timeout = 30 * time.Second
		benchenv.OwnConnection(rc)
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		b.kube = append(b.kube, cs)
		ec, err := srv.EtcdClient(ctx)
		if err != nil {
			b.close()
			return nil, err
		}
		b.etcd = append(b.etcd, ec)
	}
	return b, nil
}

func (b *bench) close() {
	for _, c := range b.etcd {
		c.Close()
	}
}

func payload(seed string) map[string]string {
	return map[string]string{"payload": strings.Repeat(seed, payloadBytes/len(seed)+1)[:payloadBytes]}
}

func (b *bench) setup(ctx context.Context) error {
	cs := b.kube[0]
	for _, ns := range []string{b.writeNS, b.listNS} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{benchLabel: "true"}},
		}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	for i := range b.cfg.listSize {
		name := fmt.Sprintf("l-%04d", i)
		if _, err := cs.CoreV1().ConfigMaps(b.listNS).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: "list"}},
			Data:       payload(name),
		}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create list ConfigMap: %w", err)
		}
		b.listNames = append(b.listNames, name)
	}
	for w := range b.kube {
		cm, err := cs.CoreV1().ConfigMaps(b.writeNS).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("u-%03d", w), Labels: map[string]string{benchLabel: "update"}},
			Data:       payload("u"),
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("create update ConfigMap: %w", err)
		}
		b.updated = append(b.updated, cm)
	}

	// The controller-manager publishes kube-root-ca.crt into every new
	// namespace; wait for it so the listed set does not change mid-run.
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := cs.CoreV1().ConfigMaps(b.listNS).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err == nil || time.Now().After(deadline) {
			break
		}
		if !apierrors.IsNotFound(err) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := cs.CoreV1().ConfigMaps(b.listNS).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	b.listCount = len(list.Items)

	// etcd values as large as a stored bench ConfigMap, and as many keys in
	// the range as the namespace lists.
	raw, err := b.etcd[0].Get(ctx, "/registry/configmaps/"+b.listNS+"/"+b.listNames[0])
	if err != nil {
		return fmt.Errorf("read stored ConfigMap from etcd: %w", err)
	}
	if len(raw.Kvs) != 1 {
		return fmt.Errorf("stored ConfigMap not found in etcd under /registry/configmaps/%s/", b.listNS)
	}
	b.valueSize = len(raw.Kvs[0].Value)
	b.value = strings.Repeat("v", b.valueSize)
	for i := range b.listCount {
		key := fmt.Sprintf("%slist/%04d", b.prefix, i)
		if _, err := b.etcd[0].Put(ctx, key, b.value); err != nil {
			return fmt.Errorf("etcd put: %w", err)
		}
		b.listKeys = append(b.listKeys, key)
	}
	return nil
}

// afterLevel removes what one level's create and put phases wrote, so that
// every level starts from the same store size.
func (b *bench) afterLevel(ctx context.Context) error {
	b.level++
	if err := b.kube[0].CoreV1().ConfigMaps(b.writeNS).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: benchLabel + "=create"}); err != nil {
		return fmt.Errorf("delete created ConfigMaps: %w", err)
	}
	if _, err := b.etcd[0].Delete(ctx, b.prefix+"w/", clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("delete put keys: %w", err)
	}
	return nil
}

func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	if len(b.kube) > 0 {
		for _, ns := range []string{b.writeNS, b.listNS} {
			if err := b.kube[0].CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if len(b.etcd) > 0 {
		if _, err := b.etcd[0].Delete(ctx, b.prefix, clientv3.WithPrefix()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// warmUp makes each of the first n clients do one read, so connection
// setup (TCP, TLS, HTTP/2) is not counted in the first phase.
func (b *bench) warmUp(ctx context.Context, side string, n int) error {
	errc := make(chan error, n)
	for w := range n {
		go func() {
			var err error
			if side == "api" {
				_, err = b.kube[w].CoreV1().ConfigMaps(b.listNS).Get(ctx, b.listNames[0], metav1.GetOptions{})
			} else {
				_, err = b.etcd[w].Get(ctx, b.listKeys[0])
			}
			errc <- err
		}()
	}
	var errs []error
	for range n {
		errs = append(errs, <-errc)
	}
	return errors.Join(errs...)
}

// phase is one operation measured at one concurrency level.
type phase struct {
	side, op string
	// do issues one request as client w; seq counts its requests.
	do func(ctx context.Context, w int, seq int, rnd uint64) error
}

func (b *bench) phases(n int) []phase {
	level := b.level
	ns := b.writeNS
	return []phase{
		{"api", "create", func(ctx context.Context, w, seq int, _ uint64) error {
			name := fmt.Sprintf("c-%d-%03d-%07d", level, w, seq)
			_, err := b.kube[w].CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{benchLabel: "create"}},
				Data:       payload(name),
			}, metav1.CreateOptions{})
			return err
		}},
		{"api", "get", func(ctx context.Context, w, _ int, rnd uint64) error {
			_, err := b.kube[w].CoreV1().ConfigMaps(b.listNS).Get(ctx, b.listNames[rnd%uint64(len(b.listNames))], metav1.GetOptions{})
			return err
		}},
		{"api", "list", func(ctx context.Context, w, _ int, _ uint64) error {
			l, err := b.kube[w].CoreV1().ConfigMaps(b.listNS).List(ctx, metav1.ListOptions{})
			if err == nil && len(l.Items) != b.listCount {
				err = fmt.Errorf("listed %d ConfigMaps, want %d", len(l.Items), b.listCount)
			}
			return err
		}},
		{"api", "update", func(ctx context.Context, w, seq int, _ uint64) error {
			cm := b.updated[w].DeepCopy()
			cm.Data = payload(strconv.Itoa(seq) + "-")
			out, err := b.kube[w].CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			if err == nil {
				b.updated[w] = out // only client w touches its slot
			}
			return err
		}},
		{"etcd", "put", func(ctx context.Context, w, seq int, _ uint64) error {
			_, err := b.etcd[w].Put(ctx, fmt.Sprintf("%sw/%d/%03d/%07d", b.prefix, level, w, seq), b.value)
			return err
		}},
		{"etcd", "get", func(ctx context.Context, w, _ int, rnd uint64) error {
			r, err := b.etcd[w].Get(ctx, b.listKeys[rnd%uint64(len(b.listKeys))])
			if err == nil && len(r.Kvs) != 1 {
				err = errors.New("key not found")
			}
			return err
		}},
		{"etcd", "range", func(ctx context.Context, w, _ int, _ uint64) error {
			r, err := b.etcd[w].Get(ctx, b.prefix+"list/", clientv3.WithPrefix())
			if err == nil && len(r.Kvs) != b.listCount {
				err = fmt.Errorf("ranged %d keys, want %d", len(r.Kvs), b.listCount)
			}
			return err
		}},
	}
}
