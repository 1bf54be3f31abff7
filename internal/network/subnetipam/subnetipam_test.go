package subnetipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func r(start, end string) Range {
	return Range{netip.MustParseAddr(start), netip.MustParseAddr(end)}
}

func TestEffective(t *testing.T) {
	tests := []struct {
		name      string
		cidr      string
		gateway   string
		noGateway bool
		pools     []Range
		wantGW    string
		wantPools string
		wantErr   string
	}{
		{name: "defaults", cidr: "10.0.0.0/24", wantGW: "10.0.0.1", wantPools: "10.0.0.2-10.0.0.254"},
		{name: "no gateway", cidr: "10.0.0.0/24", noGateway: true, wantPools: "10.0.0.1-10.0.0.254"},
		{name: "gateway in the middle splits the pool", cidr: "10.0.0.0/24", gateway: "10.0.0.100", wantGW: "10.0.0.100", wantPools: "10.0.0.1-10.0.0.99 10.0.0.101-10.0.0.254"},
		{name: "gateway last host", cidr: "10.0.0.0/29", gateway: "10.0.0.6", wantGW: "10.0.0.6", wantPools: "10.0.0.1-10.0.0.5"},
		{name: "explicit pools sorted", cidr: "10.0.0.0/24", pools: []Range{r("10.0.0.100", "10.0.0.110"), r("10.0.0.10", "10.0.0.20")}, wantGW: "10.0.0.1", wantPools: "10.0.0.10-10.0.0.20 10.0.0.100-10.0.0.110"},
		{name: "gateway in a pool", cidr: "10.0.0.0/24", pools: []Range{r("10.0.0.1", "10.0.0.20")}, wantErr: "conflicts with allocation pool"},
		{name: "pools overlap", cidr: "10.0.0.0/24", pools: []Range{r("10.0.0.10", "10.0.0.20"), r("10.0.0.20", "10.0.0.30")}, wantErr: "overlap"},
		{name: "pool outside", cidr: "10.0.0.0/24", pools: []Range{r("10.0.1.10", "10.0.1.20")}, wantErr: "not in 10.0.0.0/24"},
		{name: "pool backwards", cidr: "10.0.0.0/24", pools: []Range{r("10.0.0.20", "10.0.0.10")}, wantErr: "not a range"},
		{name: "gateway outside", cidr: "10.0.0.0/24", gateway: "10.0.1.1", wantErr: "not in"},
		{name: "too large", cidr: "10.0.0.0/8", wantErr: "larger than"},
		{name: "IPv6", cidr: "fd00::/64", wantErr: "not an IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw, pools, err := Effective(netip.MustParsePrefix(tt.cidr), tt.gateway, tt.noGateway, tt.pools)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range pools {
				got = append(got, p.String())
			}
			gws := ""
			if gw.IsValid() {
				gws = gw.String()
			}
			if gws != tt.wantGW || strings.Join(got, " ") != tt.wantPools {
				t.Errorf("gateway %q pools %q, want %q %q", gws, strings.Join(got, " "), tt.wantGW, tt.wantPools)
			}
		})
	}
}

func newSubnet(t *testing.T, cidr, gateway string, pools ...Range) *Subnet {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	gw, eff, err := Effective(p, gateway, false, pools)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(p, gw, eff)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAllocate(t *testing.T) {
	s := newSubnet(t, "10.0.0.0/24", "", r("10.0.0.10", "10.0.0.12"))
	tests := []struct {
		addr string
		want error
	}{
		{"10.0.0.10", nil},
		{"10.0.0.10", ErrInUse},
		{"10.0.1.10", ErrOutsideSubnet},
		{"10.0.0.0", ErrReserved},   // network
		{"10.0.0.255", ErrReserved}, // broadcast
		{"10.0.0.1", ErrReserved},   // gateway
		{"10.0.0.50", ErrReserved},  // outside the pools
		{"10.0.0.12", nil},
	}
	for _, tt := range tests {
		err := s.Allocate(netip.MustParseAddr(tt.addr))
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("Allocate(%s) = %v, want %v", tt.addr, err, tt.want)
		}
	}
	if s.Used() != 2 || s.Free() != 1 {
		t.Errorf("used %d free %d, want 2 1", s.Used(), s.Free())
	}
	if a, err := s.AllocateNext(); err != nil || a.String() != "10.0.0.11" {
		t.Errorf("AllocateNext = %v %v, want 10.0.0.11", a, err)
	}
	if _, err := s.AllocateNext(); !errors.Is(err, ErrFull) {
		t.Errorf("AllocateNext on a full pool = %v, want ErrFull", err)
	}
	s.Release(netip.MustParseAddr("10.0.0.11"))
	s.Release(netip.MustParseAddr("10.0.0.11")) // twice: nothing
	if s.Has(netip.MustParseAddr("10.0.0.11")) || s.Free() != 1 {
		t.Errorf("release did not free 10.0.0.11 (free %d)", s.Free())
	}
}

func TestAllocateNextSkipsGateway(t *testing.T) {
	s := newSubnet(t, "10.0.0.0/29", "10.0.0.3")
	var got []string
	for {
		a, err := s.AllocateNext()
		if err != nil {
			break
		}
		got = append(got, a.String())
	}
	if strings.Join(got, " ") != "10.0.0.1 10.0.0.2 10.0.0.4 10.0.0.5 10.0.0.6" {
		t.Errorf("allocated %v", got)
	}
	if s.Free() != 0 || s.Used() != 5 {
		t.Errorf("free %d used %d", s.Free(), s.Used())
	}
}

func TestEncoding(t *testing.T) {
	s := newSubnet(t, "10.0.0.0/16", "")
	if b := s.Bytes(); b != nil {
		t.Errorf("empty bitmap encodes as %v, want nothing", b)
	}
	for _, a := range []string{"10.0.0.2", "10.0.0.9", "10.0.3.1"} {
		if err := s.Allocate(netip.MustParseAddr(a)); err != nil {
			t.Fatal(err)
		}
	}
	b := s.Bytes()
	if len(b) != 3*32+1 { // 10.0.3.1 is bit 769: byte 96
		t.Errorf("encoded %d bytes, want 97 (trailing zeros trimmed)", len(b))
	}
	if b[0] != 0x20 || b[1] != 0x40 {
		t.Errorf("first bytes %x %x, want 20 40 (most significant bit first)", b[0], b[1])
	}
	other := newSubnet(t, "10.0.0.0/16", "")
	if err := other.Load(b); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(other.Allocated()) != "[10.0.0.2 10.0.0.9 10.0.3.1]" {
		t.Errorf("loaded %v", other.Allocated())
	}
	small := newSubnet(t, "10.0.0.0/29", "")
	if err := small.Load(b); err == nil {
		t.Error("a /29 loads a /16's bitmap")
	}
}

// casStore is a subnet bitmap with a version, written only by
// compare-and-swap, as the API server writes an object.
type casStore struct {
	mu       sync.Mutex
	data     []byte
	version  int
	writes   int
	fails    int
	attempts int
	cidr     netip.Prefix
}

var errConflict = errors.New("conflict")

func (c *casStore) Read(context.Context) (*Subnet, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gw, pools, err := Effective(c.cidr, "", false, nil)
	if err != nil {
		return nil, "", err
	}
	s, err := New(c.cidr, gw, pools)
	if err != nil {
		return nil, "", err
	}
	if err := s.Load(c.data); err != nil {
		return nil, "", err
	}
	return s, strconv.Itoa(c.version), nil
}

func (c *casStore) Write(_ context.Context, s *Subnet, version string) error {
	runtime.Gosched() // let other writers read the same version
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts++
	if c.attempts%50 == 0 {
		c.version++ // another writer changed something else meanwhile
	}
	if version != strconv.Itoa(c.version) {
		c.fails++
		return errConflict
	}
	c.data, c.version = s.Bytes(), c.version+1
	c.writes++
	return nil
}

func TestConcurrentAllocationsNeverShareAnAddress(t *testing.T) {
	store := &casStore{cidr: netip.MustParsePrefix("10.0.0.0/24")}
	const workers, each = 20, 12 // 240 of the 253 free addresses
	var mu sync.Mutex
	got := map[netip.Addr]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				var a netip.Addr
				err := errConflict
				// A writer that gives up is retried, as a controller requeues.
				for errors.Is(err, errConflict) {
					err = Update(context.Background(), store, func(err error) bool { return errors.Is(err, errConflict) }, func(s *Subnet) error {
						var err error
						a, err = s.AllocateNext()
						return err
					})
				}
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				mu.Lock()
				got[a]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for a, n := range got {
		if n > 1 {
			t.Errorf("%s handed out %d times", a, n)
		}
	}
	if len(got) != workers*each || store.writes != workers*each {
		t.Errorf("%d addresses, %d writes, want %d", len(got), store.writes, workers*each)
	}
	s, _, _ := store.Read(context.Background())
	if s.Used() != workers*each {
		t.Errorf("bitmap has %d in use, want %d", s.Used(), workers*each)
	}
	if store.fails == 0 {
		t.Error("no write conflicted: the test tests nothing")
	}
	t.Logf("%d conflicting writes retried", store.fails)
}

func TestUpdateStopsOnErrors(t *testing.T) {
	store := &casStore{cidr: netip.MustParsePrefix("10.0.0.0/29")}
	conflict := func(err error) bool { return errors.Is(err, errConflict) }
	want := errors.New("no")
	if err := Update(context.Background(), store, conflict, func(*Subnet) error { return want }); !errors.Is(err, want) {
		t.Errorf("Update = %v, want the change's error", err)
	}
	if err := Update(context.Background(), store, conflict, func(*Subnet) error { return ErrNoChange }); err != nil || store.writes != 0 {
		t.Errorf("Update with no change = %v, %d writes", err, store.writes)
	}
}
