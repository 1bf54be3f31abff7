// Command objstore measures the object store: PUT and GET throughput of
// 4 KiB and 64 MiB objects through the S3 and the Swift API (handlers
// in-process, a plain-HTTP loopback listener each, real HTTP clients),
// beside writing (with fsync, as the store does) and reading the same sizes
// as plain files on the same disk in the same run, as ratios (target for
// 64 MiB: >= 0.7), interleaved object by object so a busy machine weighs on
// all alike; and, as the ceiling of any GET, a plain loopback TCP stream.
// It never fails on a figure.
//
//	go run ./bench/objstore [-dir DIR] [-small 500] [-large 4] [-keep]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-cloud/strata/internal/objectstore"
	"github.com/strata-cloud/strata/internal/objectstore/s3"
	"github.com/strata-cloud/strata/internal/objectstore/swift"
	"github.com/strata-cloud/strata/internal/openstack/auth"
)

const (
	access, secret, token = "AKBENCH", "bench-secret", "bench-token"
	smallSize, largeSize  = 4 << 10, 64 << 20
)

var identity = auth.Identity{UserID: "bench", ProjectID: "bench", Namespace: "bench", Roles: []string{"member"}}

type fakeKeystone struct{}

func (fakeKeystone) EC2Credential(ctx context.Context, a string) (string, auth.Identity, error) {
	if a != access {
		return "", auth.Identity{}, auth.ErrUnauthorized
	}
	return secret, identity, nil
}

func (fakeKeystone) Authenticate(ctx context.Context, t string) (auth.Identity, error) {
	if t != token {
		return auth.Identity{}, auth.ErrUnauthorized
	}
	return identity, nil
}

func main() {
	dir := flag.String("dir", "", "directory on the disk to measure (default: a new one under $TMPDIR)")
	small := flag.Int("small", 500, "4 KiB objects per run")
	large := flag.Int("large", 4, "64 MiB objects per run")
	keep := flag.Bool("keep", false, "keep the directory")
	flag.Parse()
	if err := run(*dir, *small, *large, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "objstore:", err)
		os.Exit(1)
	}
}

// result is one measured series.
type result struct {
	n     int
	size  int
	total time.Duration
}

func (r result) mbps() float64 {
	return float64(r.n*r.size) / (1 << 20) / r.total.Seconds()
}
func (r result) opsps() float64 { return float64(r.n) / r.total.Seconds() }

func run(dir string, nSmall, nLarge int, keep bool) error {
	if dir == "" {
		d, err := os.MkdirTemp("", "objstore-bench-")
		if err != nil {
			return err
		}
		dir = d
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	st, err := objectstore.Open(filepath.Join(dir, "store"))
	if err != nil {
		return err
	}
	defer st.Close()
	rawDir := filepath.Join(dir, "raw")
	if err := os.MkdirAll(rawDir, 0o755); err != nil {
		return err
	}

	s3URL, stop1, err := serve(s3.Handler(s3.Config{Store: st, Credentials: fakeKeystone{}}))
	if err != nil {
		return err
	}
	defer stop1()
	mux := http.NewServeMux()
	mux.Handle("/object-store/", http.StripPrefix("/object-store", swift.Handler(swift.Config{Store: st, Authenticator: fakeKeystone{}})))
	swURL, stop2, err := serve(mux)
	if err != nil {
		return err
	}
	defer stop2()
	swURL += "/object-store/v1/AUTH_bench"

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	s3c := &s3Client{c: client, base: s3URL}
	swc := &swiftClient{c: client, base: swURL}
	if err := s3c.do("PUT", "/bench", nil, nil); err != nil {
		return err
	}
	if err := swc.do("PUT", "/bench-swift", nil, nil); err != nil {
		return err
	}

	data := make([]byte, largeSize)
	rand.Read(data)
	fmt.Printf("objstore bench: dir %s, %d x 4 KiB, %d x 64 MiB; plain HTTP on loopback, handlers in-process\n", dir, nSmall, nLarge)
	fmt.Println("raw = os file create+write+fsync+close / open+read; objects: PUT (fsync, rename, bbolt commit) / GET;")
	fmt.Println("read*/GET* = the same with the files' pages dropped from the page cache first (read from the disk)")
	fmt.Printf("\n%-6s %-7s %-5s %6s %11s %10s %9s\n", "size", "face", "op", "count", "MiB/s", "ops/s", "vs raw")
	var largeRatios []string
	for _, sz := range []struct {
		label string
		size  int
		n     int
	}{{"4KiB", smallSize, nSmall}, {"64MiB", largeSize, nLarge}} {
		if sz.n <= 0 {
			continue
		}
		body := data[:sz.size]
		// Interleaved per object (raw, S3, Swift), so that the load of a
		// shared machine and the state of the disk weigh on all alike.
		type face struct {
			name string
			put  func(string, []byte) error
			get  func(string) (int64, error)
		}
		faces := []face{
			{"raw", func(k string, b []byte) error { return rawWrite(filepath.Join(rawDir, k), b) }, func(k string) (int64, error) { return rawRead(filepath.Join(rawDir, k)) }},
			{"s3", func(k string, b []byte) error { return s3c.do("PUT", "/bench/"+k, b, nil) }, func(k string) (int64, error) { return s3c.get("/bench/" + k) }},
			{"swift", func(k string, b []byte) error { return swc.do("PUT", "/bench-swift/"+k, b, nil) }, func(k string) (int64, error) { return swc.get("/bench-swift/" + k) }},
		}
		puts := make([]result, len(faces))
		gets := make([]result, len(faces))
		for i := 0; i < sz.n; i++ {
			for f, fc := range faces {
				began := time.Now()
				if err := fc.put(fmt.Sprintf("%s-%d", sz.label, i), body); err != nil {
					return fmt.Errorf("%s put: %w", fc.name, err)
				}
				puts[f].total += time.Since(began)
			}
		}
		for i := 0; i < sz.n; i++ {
			for f, fc := range faces {
				began := time.Now()
				n, err := fc.get(fmt.Sprintf("%s-%d", sz.label, i))
				if err != nil {
					return fmt.Errorf("%s get: %w", fc.name, err)
				}
				if n != int64(sz.size) {
					return fmt.Errorf("%s get: %d bytes, want %d", fc.name, n, sz.size)
				}
				gets[f].total += time.Since(began)
			}
		}
		// Cold: the same reads with the files' pages dropped from the page
		// cache first, so that they come from the disk (what "read from
		// the same disk" means); only for the large objects.
		var cold []result
		if sz.size == largeSize {
			cold = make([]result, len(faces))
			for i := 0; i < sz.n; i++ {
				for f, fc := range faces {
					if err := dropCaches(dir); err != nil {
						return err
					}
					began := time.Now()
					if _, err := fc.get(fmt.Sprintf("%s-%d", sz.label, i)); err != nil {
						return fmt.Errorf("%s cold get: %w", fc.name, err)
					}
					cold[f].total += time.Since(began)
					cold[f].n, cold[f].size = sz.n, sz.size
				}
			}
		}
		var series []struct {
			face, op string
			r        result
		}
		for f, fc := range faces {
			puts[f].n, puts[f].size, gets[f].n, gets[f].size = sz.n, sz.size, sz.n, sz.size
			wop, rop := "PUT", "GET"
			if fc.name == "raw" {
				wop, rop = "write", "read"
			}
			series = append(series, struct {
				face, op string
				r        result
			}{fc.name, wop, puts[f]}, struct {
				face, op string
				r        result
			}{fc.name, rop, gets[f]})
			if cold != nil {
				cop := "GET*"
				if fc.name == "raw" {
					cop = "read*"
				}
				series = append(series, struct {
					face, op string
					r        result
				}{fc.name, cop, cold[f]})
			}
			if sz.size == largeSize && f > 0 {
				largeRatios = append(largeRatios, fmt.Sprintf("%s PUT %.2f, GET %.2f (from the disk) / %.2f (from the page cache)", fc.name,
					puts[f].mbps()/puts[0].mbps(), cold[f].mbps()/cold[0].mbps(), gets[f].mbps()/gets[0].mbps()))
			}
		}
		rawPut, rawGet := puts[0], gets[0]
		for _, s := range series {
			ratio := "-"
			switch s.op {
			case "PUT":
				ratio = fmt.Sprintf("%.2f", s.r.mbps()/rawPut.mbps())
			case "GET":
				ratio = fmt.Sprintf("%.2f", s.r.mbps()/rawGet.mbps())
			case "GET*":
				ratio = fmt.Sprintf("%.2f", s.r.mbps()/cold[0].mbps())
			}
			fmt.Printf("%-6s %-7s %-5s %6d %11.1f %10.0f %9s\n", sz.label, s.face, s.op, s.r.n, s.r.mbps(), s.r.opsps(), ratio)
		}
	}
	if len(largeRatios) > 0 {
		fmt.Printf("\n64 MiB throughput vs raw file I/O: %s (target >= 0.7)\n", join(largeRatios))
		tcp, err := loopbackTCP(data, max(nLarge, 2))
		if err != nil {
			return err
		}
		fmt.Printf("reference: a plain loopback TCP stream moves %.1f MiB/s (no HTTP, no disk): the ceiling of any GET here\n", tcp.mbps())
	}
	return nil
}

// loopbackTCP times sending data n times over one loopback TCP connection.
func loopbackTCP(data []byte, n int) (result, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; i < n; i++ {
			if _, err := c.Write(data); err != nil {
				return
			}
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	r := result{n: n, size: len(data)}
	began := time.Now()
	got, err := drain(io.LimitReader(c, int64(n*len(data))))
	r.total = time.Since(began)
	if err == nil && got != int64(n*len(data)) {
		err = fmt.Errorf("loopback: %d bytes, want %d", got, n*len(data))
	}
	return r, err
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

// dropCaches drops the page cache of every file under dir
// (POSIX_FADV_DONTNEED: clean pages go; the files were fsynced).
func dropCaches(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
}

// rawWrite writes body as a plain file, fsynced as the store's data
// files are.
func rawWrite(path string, body []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rawRead reads a plain file with the clients' 1 MiB buffer.
func rawRead(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return drain(f)
}

func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

var drainBuf [1 << 20]byte

// drain reads r to its end with a 1 MiB buffer, as the raw read does
// (io.Discard's own ReadFrom reads 8 KiB at a time).
func drain(r io.Reader) (int64, error) {
	buf := drainBuf[:]
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

type s3Client struct {
	c    *http.Client
	base string
}

func (c *s3Client) req(method, path string, body []byte) *http.Request {
	r, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	// UNSIGNED-PAYLOAD, as the aws CLI sends over HTTPS.
	s3.Sign(r, access, secret, "us-east-1", "UNSIGNED-PAYLOAD", time.Now())
	return r
}

func (c *s3Client) do(method, path string, body []byte, _ map[string]string) error {
	resp, err := c.c.Do(c.req(method, path, body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return nil
}

func (c *s3Client) get(path string) (int64, error) {
	resp, err := c.c.Do(c.req("GET", path, nil))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, errors.New(resp.Status)
	}
	return drain(resp.Body)
}

type swiftClient struct {
	c    *http.Client
	base string
}

func (c *swiftClient) do(method, path string, body []byte, _ map[string]string) error {
	r, _ := http.NewRequest(method, c.base+path, bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Set("X-Auth-Token", token)
	resp, err := c.c.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return nil
}

func (c *swiftClient) get(path string) (int64, error) {
	r, _ := http.NewRequest("GET", c.base+path, nil)
	r.Header.Set("X-Auth-Token", token)
	resp, err := c.c.Do(r)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, errors.New(resp.Status)
	}
	return drain(resp.Body)
}
