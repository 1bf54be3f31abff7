package ipam

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNewRange(t *testing.T) {
	tests := []struct {
		subnet                string
		gw, start, end, error string
	}{
		{subnet: "10.42.3.0/24", gw: "10.42.3.1", start: "10.42.3.2", end: "10.42.3.254"},
		{subnet: "10.42.3.7/24", gw: "10.42.3.1", start: "10.42.3.2", end: "10.42.3.254"},
		{subnet: "10.42.0.0/16", gw: "10.42.0.1", start: "10.42.0.2", end: "10.42.255.254"},
		{subnet: "10.42.3.0/30", gw: "10.42.3.1", start: "10.42.3.2", end: "10.42.3.2"},
		{subnet: "fd00:42::/120", gw: "fd00:42::1", start: "fd00:42::2", end: "fd00:42::ff"},
		{subnet: "10.42.3.0/31", error: "too small"},
		{subnet: "10.42.3.0/32", error: "too small"},
	}
	for _, tt := range tests {
		t.Run(tt.subnet, func(t *testing.T) {
			r, err := NewRange(netip.MustParsePrefix(tt.subnet))
			if tt.error != "" {
				if err == nil || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("err = %v, want %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := []string{r.Gateway.String(), r.Start.String(), r.End.String()}
			want := []string{tt.gw, tt.start, tt.end}
			if !slices.Equal(got, want) {
				t.Fatalf("gw/start/end = %v, want %v", got, want)
			}
		})
	}
}

func TestCandidates(t *testing.T) {
	r, err := NewRange(netip.MustParsePrefix("10.0.0.0/29")) // pods .2-.6
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		last string
		want []string
	}{
		{last: "", want: []string{"2", "3", "4", "5", "6"}},
		{last: "10.0.0.2", want: []string{"3", "4", "5", "6", "2"}},
		{last: "10.0.0.6", want: []string{"2", "3", "4", "5", "6"}},
		{last: "10.0.0.1", want: []string{"2", "3", "4", "5", "6"}}, // gateway: out of range
		{last: "192.168.0.1", want: []string{"2", "3", "4", "5", "6"}},
	}
	for _, tt := range tests {
		t.Run(tt.last, func(t *testing.T) {
			var last netip.Addr
			if tt.last != "" {
				last = netip.MustParseAddr(tt.last)
			}
			var got []string
			for a := range r.Candidates(last) {
				got = append(got, strings.TrimPrefix(a.String(), "10.0.0."))
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func key(c string) Key { return Key{ContainerID: c, IfName: "eth0"} }

func TestStore(t *testing.T) {
	ctx := context.Background()
	type step struct {
		op      string // alloc, release, releaseContainer
		key     Key
		wantIP  string // for alloc; "" with wantErr
		wantErr error
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "sequential and idempotent", steps: []step{
			{op: "alloc", key: key("a"), wantIP: "10.0.0.2"},
			{op: "alloc", key: key("b"), wantIP: "10.0.0.3"},
			{op: "alloc", key: key("a"), wantIP: "10.0.0.2"},
			{op: "alloc", key: Key{"a", "net1"}, wantIP: "10.0.0.4"},
		}},
		{name: "exhaustion then reuse after release", steps: []step{
			{op: "alloc", key: key("a"), wantIP: "10.0.0.2"},
			{op: "alloc", key: key("b"), wantIP: "10.0.0.3"},
			{op: "alloc", key: key("c"), wantIP: "10.0.0.4"},
			{op: "alloc", key: key("d"), wantIP: "10.0.0.5"},
			{op: "alloc", key: key("e"), wantIP: "10.0.0.6"},
			{op: "alloc", key: key("f"), wantErr: ErrExhausted},
			{op: "release", key: key("c")},
			{op: "release", key: key("c")}, // idempotent
			{op: "alloc", key: key("f"), wantIP: "10.0.0.4"},
			{op: "alloc", key: key("g"), wantErr: ErrExhausted},
		}},
		{name: "round robin skips a just released address", steps: []step{
			{op: "alloc", key: key("a"), wantIP: "10.0.0.2"},
			{op: "release", key: key("a")},
			{op: "alloc", key: key("b"), wantIP: "10.0.0.3"},
		}},
		{name: "release by container frees every interface", steps: []step{
			{op: "alloc", key: Key{"a", "eth0"}, wantIP: "10.0.0.2"},
			{op: "alloc", key: Key{"a", "net1"}, wantIP: "10.0.0.3"},
			{op: "alloc", key: key("b"), wantIP: "10.0.0.4"},
			{op: "releaseContainer", key: Key{ContainerID: "a"}},
			{op: "alloc", key: key("c"), wantIP: "10.0.0.5"},
			{op: "alloc", key: key("d"), wantIP: "10.0.0.6"},
			{op: "alloc", key: key("e"), wantIP: "10.0.0.2"},
			{op: "alloc", key: key("f"), wantIP: "10.0.0.3"},
			{op: "alloc", key: key("g"), wantErr: ErrExhausted},
		}},
		{name: "empty key refused", steps: []step{
			{op: "alloc", key: Key{ContainerID: "a"}, wantErr: errAny},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(t.TempDir(), netip.MustParsePrefix("10.0.0.0/29"))
			if err != nil {
				t.Fatal(err)
			}
			for i, st := range tt.steps {
				switch st.op {
				case "alloc":
					a, err := s.Allocate(ctx, st.key)
					if st.wantErr != nil {
						if err == nil || (st.wantErr != errAny && !errors.Is(err, st.wantErr)) {
							t.Fatalf("step %d: err = %v, want %v", i, err, st.wantErr)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if a.IP.String() != st.wantIP || a.Key != st.key {
						t.Fatalf("step %d: got %v, want %s for %v", i, a, st.wantIP, st.key)
					}
				case "release":
					if err := s.Release(ctx, st.key); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				case "releaseContainer":
					if err := s.ReleaseByContainer(ctx, st.key.ContainerID); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
				}
			}
		})
	}
}

var errAny = errors.New("any error")

func TestGC(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	for _, c := range []string{"live", "dead", "dead2"} {
		if _, err := s.Allocate(ctx, key(c)); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(time.Minute)
	if _, err := s.Allocate(ctx, key("young")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Second)
	released, err := s.GC(ctx, map[string]bool{"live": true}, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range released {
		got = append(got, a.ContainerID)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"dead", "dead2"}) {
		t.Fatalf("released %v", got)
	}
	left, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var leftIDs []string
	for _, a := range left {
		leftIDs = append(leftIDs, a.ContainerID)
	}
	slices.Sort(leftIDs)
	if !slices.Equal(leftIDs, []string{"live", "young"}) {
		t.Fatalf("left %v", leftIDs)
	}
}

func TestSubnetChangeReleasesStale(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old, _ := Open(dir, netip.MustParsePrefix("10.0.0.0/24"))
	if _, err := old.Allocate(ctx, key("a")); err != nil {
		t.Fatal(err)
	}
	s, _ := Open(dir, netip.MustParsePrefix("10.0.1.0/24"))
	a, err := s.Allocate(ctx, key("a"))
	if err != nil || a.IP.String() != "10.0.1.2" {
		t.Fatalf("got %v, %v", a, err)
	}
	all, _ := s.List(ctx)
	if len(all) != 1 {
		t.Fatalf("stale allocation kept: %v", all)
	}
}

func TestConcurrentGoroutines(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 60
	var wg sync.WaitGroup
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// each goroutine opens its own Store, like separate plugin invocations would
			s, err := Open(dir, netip.MustParsePrefix("10.0.0.0/26")) // 61 pod addresses
			if err != nil {
				errs[i] = err
				return
			}
			a, err := s.Allocate(ctx, key(fmt.Sprint("c", i)))
			ips[i], errs[i] = a.IP, err
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if j, dup := seen[ips[i]]; dup {
			t.Fatalf("%v given to %d and %d", ips[i], i, j)
		}
		seen[ips[i]] = i
	}
}

// TestHelperProcess is not a test: TestConcurrentProcesses runs the test binary with it.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("STRATA_IPAM_HELPER_DIR")
	if dir == "" {
		t.Skip("helper for TestConcurrentProcesses")
	}
	s, err := Open(dir, netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		a, err := s.Allocate(context.Background(), key(fmt.Sprintf("%s-%d", os.Getenv("STRATA_IPAM_HELPER_ID"), i)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Println("IP", a.IP)
	}
}

func TestConcurrentProcesses(t *testing.T) {
	dir := t.TempDir()
	const procs = 6
	outs := make([][]byte, procs)
	var wg sync.WaitGroup
	for p := range procs {
		wg.Go(func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), "STRATA_IPAM_HELPER_DIR="+dir, fmt.Sprint("STRATA_IPAM_HELPER_ID=p", p))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("helper %d: %v\n%s", p, err, out)
			}
			outs[p] = out
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, out := range outs {
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			ip, ok := strings.CutPrefix(sc.Text(), "IP ")
			if !ok {
				continue
			}
			if seen[ip] {
				t.Fatalf("%s allocated twice", ip)
			}
			seen[ip] = true
		}
	}
	if len(seen) != procs*20 {
		t.Fatalf("got %d addresses, want %d", len(seen), procs*20)
	}
}

func TestAllocateAddr(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir(), netip.MustParsePrefix("10.0.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	vm := Key{ContainerID: "vm", IfName: "eth0"}
	want := netip.MustParseAddr("10.0.0.57")
	a, err := s.AllocateAddr(ctx, vm, want)
	if err != nil || a.IP != want {
		t.Fatalf("AllocateAddr = %v, %v; want %s", a.IP, err, want)
	}
	if again, err := s.AllocateAddr(ctx, vm, want); err != nil || again.IP != want {
		t.Errorf("AllocateAddr again for the same key = %v, %v", again.IP, err)
	}
	other := Key{ContainerID: "other", IfName: "eth0"}
	if _, err := s.AllocateAddr(ctx, other, want); !errors.Is(err, ErrUnavailable) {
		t.Errorf("another key got a held address: %v", err)
	}
	if _, err := s.AllocateAddr(ctx, other, netip.MustParseAddr("10.0.1.5")); !errors.Is(err, ErrUnavailable) {
		t.Errorf("an address outside the range: %v", err)
	}
	if next, err := s.Allocate(ctx, other); err != nil || next.IP == want {
		t.Errorf("Allocate gave %v, %v next to a requested address", next.IP, err)
	}
}
