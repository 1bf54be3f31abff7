// Command keystone measures Strata's Keystone: token issue (password) and
// token validation throughput and latency with N concurrent clients, and
// prints figures; it never fails on them.
//
//	go run ./bench/keystone -bin bin/strata [-duration 5s] [-clients 1,8,32] [-compare]
//
// It starts a built `bin/strata` on free loopback ports with a temporary
// data dir through bench/benchenv (no node agent, no root), reads the
// admin's credentials with `strata openrc`, and makes one user per client
// (role member on project admin). Each client has its own HTTPS connection.
// Phases, each -duration long, per concurrency level N:
//
//   - issue: POST /v3/auth/tokens, password method, project-scoped, each
//     client as its own user (bcrypt dominates: about one core-millisecond
//     per cost unit, cost 10);
//   - validate: GET /v3/auth/tokens?nocatalog, X-Auth-Token and
//     X-Subject-Token both the client's own token (two validations a
//     call, as Keystone middleware in front of a service does);
//   - kube: the same tokens as bearer tokens on kube-apiserver's POST
//     /apis/authentication.k8s.io/v1/selfsubjectreviews (authentication
//     through Keystone's token authenticator, nothing else).
//
// With -compare the whole run is made twice, first with Keystone's
// validation cache off (STRATA_KEYSTONE_CACHE_TTL=0 in the server's
// environment), then with its default (2 s), and the ratios printed.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
)

const (
	readyTimeout = 5 * time.Minute
	stopTimeout  = time.Minute
	cacheEnv     = "STRATA_KEYSTONE_CACHE_TTL" // keystone.CacheTTLEnv
	project      = "admin"
	userPassword = "bench-password"
)

type config struct {
	bin      string
	duration time.Duration
	clients  []int
	compare  bool
	keep     bool
}

func main() {
	var cfg config
	var clients string
	flag.StringVar(&cfg.bin, "bin", "bin/strata", "strata binary to run")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "length of each phase")
	flag.StringVar(&clients, "clients", "1,8,32", "concurrency levels")
	flag.BoolVar(&cfg.compare, "compare", false, "run twice: validation cache off, then on (default TTL)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary data dir and server log")
	flag.Parse()
	for _, f := range strings.Split(clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "keystone bench: bad -clients %q\n", clients)
			os.Exit(2)
		}
		cfg.clients = append(cfg.clients, n)
	}
	benchenv.Main("keystone", func(ctx context.Context) error { return run(ctx, cfg) })
}

func run(ctx context.Context, cfg config) error {
	modes := []string{""} // the server's default
	if cfg.compare {
		modes = []string{"0", ""}
	}
	all := map[string][]result{}
	for _, mode := range modes {
		rs, err := runServer(ctx, cfg, mode)
		if err != nil {
			return err
		}
		all[mode] = rs
	}
	if cfg.compare {
		fmt.Printf("\ncache on / cache off (throughput ratio, p99 ratio)\n")
		for i, on := range all[""] {
			off := all["0"][i]
			fmt.Printf("  %-8s N=%-3d  throughput x%.2f   p99 x%.2f\n", on.op, on.n,
				on.throughput()/max(off.throughput(), 1e-9), ms(on.quantile(0.99))/max(ms(off.quantile(0.99)), 1e-9))
		}
	}
	return nil
}

// runServer starts a server with the cache setting mode ("" default, "0"
// off), runs every phase and stops it.
func runServer(ctx context.Context, cfg config, mode string) (results []result, err error) {
	began := time.Now()
	root, err := os.MkdirTemp("", "strata-bench-keystone-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cfg.keep {
			fmt.Printf("data dir and server log kept in %s\n", root)
			return
		}
		os.RemoveAll(root)
	}()
	os.Unsetenv(cacheEnv)
	if mode != "" {
		os.Setenv(cacheEnv, mode) // the server inherits the environment
	}
	srv, err := benchenv.Start(benchenv.Options{Bin: cfg.bin, DataDir: filepath.Join(root, "data"), LogPath: filepath.Join(root, "server.log")})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, "server log tail:\n"+srv.LogTail(30))
		}
		took, stopErr := srv.Stop(stopTimeout)
		if stopErr != nil {
			err = errors.Join(err, stopErr)
			return
		}
		fmt.Printf("server stopped in %.2f s; this run took %s\n", took.Seconds(), time.Since(began).Round(time.Second))
	}()
	ready, err := srv.WaitReady(ctx, 50*time.Millisecond, readyTimeout)
	if err != nil {
		return nil, err
	}
	b, err := newBench(ctx, srv, cfg)
	if err != nil {
		return nil, err
	}
	cache := "default (2 s)"
	if mode == "0" {
		cache = "off"
	}
	fmt.Printf("\nstrata Keystone benchmark — validation cache %s\n", cache)
	fmt.Printf("  binary: %s   cpus: %d (bench clients and server share them)   load average: %s   server ready in %.2f s\n",
		cfg.bin, runtime.NumCPU(), benchenv.LoadAverage(), ready.Seconds())
	fmt.Printf("  phases: %s each; levels: %v clients; one HTTPS connection per client\n\n", cfg.duration, cfg.clients)
	maxN := slices.Max(cfg.clients)
	if err := b.makeUsers(ctx, maxN); err != nil {
		return nil, err
	}
	for _, n := range cfg.clients {
		for _, op := range []string{"issue", "validate", "kube"} {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			r := b.phase(ctx, op, n, cfg.duration)
			fmt.Printf("  %-8s N=%-3d %8.1f ops/s  p50 %8.2f ms  p99 %8.2f ms  errors %d%s\n",
				r.op, r.n, r.throughput(), ms(r.quantile(0.50)), ms(r.quantile(0.99)), r.errors, r.firstErr())
			results = append(results, r)
		}
	}
	fmt.Printf("\nload average at the end: %s\n", benchenv.LoadAverage())
	return results, ctx.Err()
}

type bench struct {
	authURL string // .../identity/v3
	kubeURL string
	osCA    *x509.CertPool
	kubeCA  *x509.CertPool
	admin   string // the admin's token
	users   []string
	tokens  []string // each user's project-scoped token
	clients []*http.Client
}

func newBench(ctx context.Context, srv *benchenv.Server, cfg config) (*bench, error) {
	env, err := openrc(ctx, cfg.bin, srv.Options().DataDir)
	if err != nil {
		return nil, err
	}
	b := &bench{authURL: strings.TrimSuffix(env["OS_AUTH_URL"], "/")}
	pem, err := os.ReadFile(env["OS_CACERT"])
	if err != nil {
		return nil, fmt.Errorf("OS_CACERT: %w", err)
	}
	b.osCA = x509.NewCertPool()
	b.osCA.AppendCertsFromPEM(pem)
	rc, err := srv.RESTConfig()
	if err != nil {
		return nil, err
	}
	b.kubeURL = strings.TrimSuffix(rc.Host, "/")
	b.kubeCA = x509.NewCertPool()
	if len(rc.CAData) > 0 {
		b.kubeCA.AppendCertsFromPEM(rc.CAData)
	} else if rc.CAFile != "" {
		data, err := os.ReadFile(rc.CAFile)
		if err != nil {
			return nil, err
		}
		b.kubeCA.AppendCertsFromPEM(data)
	}
	// Keystone starts after /readyz: wait for the admin's token.
	c := b.client()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		tok, err := b.issue(ctx, c, env["OS_USERNAME"], env["OS_PASSWORD"])
		if err == nil {
			b.admin = tok
			return b, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// client is an HTTP client for the OpenStack API with a connection of its
// own.
func (b *bench) client() *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: b.osCA, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
	}}
}

func (b *bench) kubeClient() *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: b.kubeCA, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
	}}
}

// openrc runs `strata openrc` and returns its variables.
func openrc(ctx context.Context, bin, dataDir string) (map[string]string, error) {
	out, err := exec.CommandContext(ctx, bin, "openrc", "--data-dir", dataDir).Output()
	if err != nil {
		return nil, fmt.Errorf("strata openrc: %w", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if ok && !strings.HasPrefix(line, "#") {
			env[k] = strings.Trim(v, "'\"")
		}
	}
	if env["OS_AUTH_URL"] == "" || env["OS_PASSWORD"] == "" {
		return nil, fmt.Errorf("strata openrc printed no OS_AUTH_URL/OS_PASSWORD")
	}
	return env, nil
}

// call sends one JSON request and returns the status, the X-Subject-Token
// and the body.
func call(ctx context.Context, c *http.Client, method, url string, body any, hdr ...string) (int, string, []byte, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Subject-Token"), data, err
}

func (b *bench) issue(ctx context.Context, c *http.Client, user, password string) (string, error) {
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{"user": map[string]any{
			"name": user, "domain": map[string]any{"id": "default"}, "password": password}}},
		"scope": map[string]any{"project": map[string]any{"name": project, "domain": map[string]any{"id": "default"}}},
	}}
	code, tok, data, err := call(ctx, c, "POST", b.authURL+"/auth/tokens?nocatalog", body)
	if err != nil {
		return "", err
	}
	if code != http.StatusCreated || tok == "" {
		return "", fmt.Errorf("issue: %d %s", code, bytes.TrimSpace(data))
	}
	return tok, nil
}

// makeUsers makes n users with role member on the admin project, and a
// token and a client each.
func (b *bench) makeUsers(ctx context.Context, n int) error {
	c := b.client()
	run := strconv.FormatInt(time.Now().Unix(), 36)
	for i := range n {
		name := fmt.Sprintf("bench-%s-%d", run, i)
		code, _, data, err := call(ctx, c, "POST", b.authURL+"/users", map[string]any{"user": map[string]any{"name": name, "password": userPassword}}, "X-Auth-Token", b.admin)
		if err != nil || code != http.StatusCreated {
			return fmt.Errorf("create user %s: %d %s %v", name, code, data, err)
		}
		code, _, data, err = call(ctx, c, "PUT", b.authURL+"/projects/"+project+"/users/"+name+"/roles/member", nil, "X-Auth-Token", b.admin)
		if err != nil || code != http.StatusNoContent {
			return fmt.Errorf("grant %s: %d %s %v", name, code, data, err)
		}
		b.users = append(b.users, name)
	}
	for _, u := range b.users {
		tok, err := b.issue(ctx, c, u, userPassword)
		if err != nil {
			return err
		}
		b.tokens = append(b.tokens, tok)
	}
	return nil
}

// result is one phase's figures.
type result struct {
	op      string
	n       int
	elapsed time.Duration
	lat     []time.Duration
	errors  int
	err     error
}

func (r result) throughput() float64 { return float64(len(r.lat)) / r.elapsed.Seconds() }

func (r result) quantile(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return benchenv.Percentile(r.lat, q*100)
}

func (r result) firstErr() string {
	if r.err == nil {
		return ""
	}
	return "  (first: " + r.err.Error() + ")"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// phase runs op with n clients for d.
func (b *bench) phase(ctx context.Context, op string, n int, d time.Duration) result {
	var (
		mu  sync.Mutex
		res = result{op: op, n: n}
		wg  sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *http.Client
			if op == "kube" {
				c = b.kubeClient()
			} else {
				c = b.client()
			}
			defer c.CloseIdleConnections()
			user, token := b.users[i], b.tokens[i]
			var lat []time.Duration
			var errs int
			var first error
			_ = b.once(ctx, c, op, user, token) // connect outside the clock
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				err := b.once(ctx, c, op, user, token)
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errors += errs
			if res.err == nil {
				res.err = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	slices.Sort(res.lat)
	return res
}

func (b *bench) once(ctx context.Context, c *http.Client, op, user, token string) error {
	switch op {
	case "issue":
		_, err := b.issue(ctx, c, user, userPassword)
		return err
	case "validate":
		code, _, data, err := call(ctx, c, "GET", b.authURL+"/auth/tokens?nocatalog", nil, "X-Auth-Token", token, "X-Subject-Token", token)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("validate: %d %s", code, bytes.TrimSpace(data))
		}
		return err
	case "kube":
		body := map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
		code, _, data, err := call(ctx, c, "POST", b.kubeURL+"/apis/authentication.k8s.io/v1/selfsubjectreviews", body, "Authorization", "Bearer "+token)
		if err == nil && (code != http.StatusCreated || !bytes.Contains(data, []byte("keystone:"+user))) {
			err = fmt.Errorf("selfsubjectreview: %d %s", code, bytes.TrimSpace(data))
		}
		return err
	}
	return fmt.Errorf("unknown op %s", op)
}
