package ipam

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// ErrExhausted is returned when every address of the range is taken.
var ErrExhausted = errors.New("ipam: no free address in range")

// Key identifies one attachment: the CNI (containerID, ifname) pair. Allocate is idempotent per Key.
type Key struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

// Allocation is one address held by one Key.
type Allocation struct {
	Key
	IP      netip.Addr `json:"ip"`
	Created time.Time  `json:"created"`
}

const (
	lockFile  = ".lock"
	lastFile  = ".last"
	tmpPrefix = ".tmp-"
)

// Store is a file-backed allocator for one Range. Each allocation is the file <dir>/<ip>, created
// atomically (written to a temporary file, then hard-linked into place, which fails if the name
// exists), so no two processes can hold the same address and no reader sees a half-written file.
// Read-modify-write sequences also take an flock on <dir>/.lock so Allocate is idempotent across
// processes.
type Store struct {
	dir   string
	rng   Range
	now   func() time.Time
	retry time.Duration
}

// Open returns the store for subnet kept in dir, creating dir if needed. Allocations left in dir
// from an earlier, different subnet are kept (they still block nothing in the new range) until
// they are released or collected.
func Open(dir string, subnet netip.Prefix) (*Store, error) {
	rng, err := NewRange(subnet)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: create state dir: %w", err)
	}
	return &Store{dir: dir, rng: rng, now: time.Now, retry: 5 * time.Millisecond}, nil
}

// OpenExisting returns a store over dir without a range, for callers that only look up, release
// or collect (CNI DEL and GC do not know the subnet). Allocate on it fails. A missing dir is
// an empty store.
func OpenExisting(dir string) *Store {
	return &Store{dir: dir, now: time.Now, retry: 5 * time.Millisecond}
}

// Range returns the range the store allocates from.
func (s *Store) Range() Range { return s.rng }

// ErrUnavailable is returned by AllocateAddr when the address is held by another key or lies
// outside the range.
var ErrUnavailable = errors.New("ipam: address not available")

// Allocate returns the address held by key, allocating the next free one if key holds none.
func (s *Store) Allocate(ctx context.Context, key Key) (Allocation, error) {
	return s.allocate(ctx, key, netip.Addr{})
}

// AllocateAddr is Allocate for one given address: a VM that keeps its IP across restarts asks
// for the one it had. It fails with ErrUnavailable when another key holds it or it is outside
// the range.
func (s *Store) AllocateAddr(ctx context.Context, key Key, want netip.Addr) (Allocation, error) {
	if !want.IsValid() {
		return Allocation{}, fmt.Errorf("ipam: allocate: no address given")
	}
	return s.allocate(ctx, key, want)
}

func (s *Store) allocate(ctx context.Context, key Key, want netip.Addr) (Allocation, error) {
	if key.ContainerID == "" || key.IfName == "" {
		return Allocation{}, fmt.Errorf("ipam: allocate: empty container ID or interface name")
	}
	if !s.rng.Subnet.IsValid() {
		return Allocation{}, fmt.Errorf("ipam: allocate: store opened without a subnet")
	}
	var out Allocation
	err := s.locked(ctx, func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		used := make(map[netip.Addr]bool, len(all))
		for _, a := range all {
			if a.Key == key && s.rng.Contains(a.IP) {
				out = a
				return nil
			}
			if a.Key == key { // left over from an earlier subnet: give it back
				if err := os.Remove(filepath.Join(s.dir, a.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("ipam: release stale %s: %w", a.IP, err)
				}
				continue
			}
			used[a.IP] = true
		}
		if want.IsValid() {
			if !s.rng.Contains(want) {
				return fmt.Errorf("%w: %s is outside %s-%s", ErrUnavailable, want, s.rng.Start, s.rng.End)
			}
			if used[want] {
				// A reservation (the address of a VM that migrated away)
				// yields to a pod asking for it by name: the VM coming back.
				i := slices.IndexFunc(all, func(a Allocation) bool { return a.IP == want })
				if i < 0 || !strings.HasPrefix(all[i].ContainerID, ReservedPrefix) {
					return fmt.Errorf("%w: %s is in use by another container", ErrUnavailable, want)
				}
				if err := os.Remove(filepath.Join(s.dir, want.String())); err != nil {
					return fmt.Errorf("ipam: release reservation of %s: %w", want, err)
				}
			}
			a := Allocation{Key: key, IP: want, Created: s.now().UTC()}
			if err := s.create(a); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%w: %s is in use by another container", ErrUnavailable, want)
				}
				return err
			}
			out = a
			return nil
		}
		for ip := range s.rng.Candidates(s.readLast()) {
			if used[ip] {
				continue
			}
			a := Allocation{Key: key, IP: ip, Created: s.now().UTC()}
			err := s.create(a)
			if errors.Is(err, fs.ErrExist) {
				continue // taken by a writer that did not lock; never steal it
			}
			if err != nil {
				return err
			}
			s.writeLast(ip)
			out = a
			return nil
		}
		return fmt.Errorf("%w %s-%s", ErrExhausted, s.rng.Start, s.rng.End)
	})
	return out, err
}

// Get returns the allocation held by key, if any.
func (s *Store) Get(ctx context.Context, key Key) (Allocation, bool, error) {
	all, err := s.List(ctx)
	if err != nil {
		return Allocation{}, false, err
	}
	for _, a := range all {
		if a.Key == key {
			return a, true, nil
		}
	}
	return Allocation{}, false, nil
}

// Release frees every address held by key. Releasing nothing is not an error.
func (s *Store) Release(ctx context.Context, key Key) error {
	_, err := s.releaseWhere(ctx, func(a Allocation) bool { return a.Key == key })
	return err
}

// ReleaseByContainer frees every address held by any interface of containerID.
func (s *Store) ReleaseByContainer(ctx context.Context, containerID string) error {
	_, err := s.releaseWhere(ctx, func(a Allocation) bool { return a.ContainerID == containerID })
	return err
}

// ReservedPrefix starts the container ID of keys that hold an address for something other than
// a container (an address a migrated VM took to another node); GC never frees them.
const ReservedPrefix = "reserved/"

// GC frees the addresses of containers not in live. Allocations younger than grace are kept,
// because a container whose CNI ADD is running may not be in the caller's list yet. It returns
// what it released.
func (s *Store) GC(ctx context.Context, live map[string]bool, grace time.Duration) ([]Allocation, error) {
	cutoff := s.now().Add(-grace)
	return s.releaseWhere(ctx, func(a Allocation) bool {
		return !live[a.ContainerID] && a.Created.Before(cutoff) && !strings.HasPrefix(a.ContainerID, ReservedPrefix)
	})
}

// List returns every allocation in the store, ordered by address.
func (s *Store) List(ctx context.Context) ([]Allocation, error) {
	var out []Allocation
	err := s.locked(ctx, func() error {
		var err error
		out, err = s.list()
		return err
	})
	return out, err
}

func (s *Store) releaseWhere(ctx context.Context, match func(Allocation) bool) ([]Allocation, error) {
	var released []Allocation
	err := s.locked(ctx, func() error {
		all, err := s.list()
		if err != nil {
			return err
		}
		for _, a := range all {
			if !match(a) {
				continue
			}
			if err := os.Remove(filepath.Join(s.dir, a.IP.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("ipam: release %s: %w", a.IP, err)
			}
			released = append(released, a)
		}
		return nil
	})
	return released, err
}

// list reads every allocation file. Files that do not parse are skipped rather than failing every
// operation; their name (an address) still counts as used because create never overwrites.
func (s *Store) list() ([]Allocation, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read state dir: %w", err)
	}
	out := make([]Allocation, 0, len(entries))
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil || !e.Type().IsRegular() {
			continue
		}
		a := Allocation{IP: ip}
		if b, err := os.ReadFile(filepath.Join(s.dir, e.Name())); err == nil {
			_ = json.Unmarshal(b, &a)
		}
		a.IP = ip // the name is authoritative
		out = append(out, a)
	}
	return out, nil // ReadDir sorts by name; fine for a listing
}

func (s *Store) create(a Allocation) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("ipam: encode allocation: %w", err)
	}
	tmp, err := os.CreateTemp(s.dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("ipam: create temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: write allocation: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("ipam: sync allocation: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("ipam: close allocation: %w", err)
	}
	// link(2) fails with EEXIST instead of replacing, like O_EXCL, but the file is complete.
	if err := os.Link(tmp.Name(), filepath.Join(s.dir, a.IP.String())); err != nil {
		return fmt.Errorf("ipam: claim %s: %w", a.IP, err)
	}
	return nil
}

func (s *Store) readLast() netip.Addr {
	b, err := os.ReadFile(filepath.Join(s.dir, lastFile))
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(strings.TrimSpace(string(b)))
	return a
}

// writeLast is a hint for round-robin only; losing it is harmless.
func (s *Store) writeLast(a netip.Addr) {
	_ = os.WriteFile(filepath.Join(s.dir, lastFile), []byte(a.String()+"\n"), 0o600)
}

// locked runs fn holding an exclusive flock on the store's lock file. Every call opens its own
// file description, so goroutines of one process exclude each other as well as processes do.
func (s *Store) locked(ctx context.Context, fn func() error) error {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if errors.Is(err, fs.ErrNotExist) { // no state dir yet: nothing to protect
		return fn()
	}
	if err != nil {
		return fmt.Errorf("ipam: open lock: %w", err)
	}
	defer f.Close() // closing releases the lock
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return fmt.Errorf("ipam: lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ipam: waiting for lock: %w", ctx.Err())
		case <-time.After(s.retry):
		}
	}
	return fn()
}
