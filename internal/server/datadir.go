package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/strata-cloud/strata/internal/pki"
)

// markerFile identifies a directory as a Strata data directory, so that
// Strata never takes over (or writes into) a directory that holds something
// else.
const markerFile = "strata.json"

// marker is the content of markerFile.
type marker struct {
	Kind      string    `json:"kind"`
	ClusterID string    `json:"clusterID,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	Version   string    `json:"version"`
}

const markerKind = "strata-data-dir"

// dataDir is an opened, locked data directory.
type dataDir struct {
	path  string
	lock  *os.File
	fresh bool // created by this start
}

// openDataDir validates and locks dir, creating it if missing. A directory
// that is neither empty nor a Strata data dir is refused, as is one that
// another process holds.
func openDataDir(dir, version string) (*dataDir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: cannot create: %w", abs, err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: cannot read: %w", abs, err)
	}
	d := &dataDir{path: abs}
	m, err := readMarker(filepath.Join(abs, markerFile))
	switch {
	case err == nil:
		if m.Kind != markerKind {
			return nil, fmt.Errorf("data dir %s: %s is not a Strata marker (kind %q); choose another --data-dir", abs, markerFile, m.Kind)
		}
	case errors.Is(err, os.ErrNotExist):
		if len(entries) > 0 {
			return nil, fmt.Errorf("data dir %s: not empty and not a Strata data dir (no %s); refusing to use it — choose an empty or new --data-dir", abs, markerFile)
		}
		d.fresh = true
	default:
		return nil, fmt.Errorf("data dir %s: %w", abs, err)
	}
	// The lock is taken before the marker is written so that two servers
	// racing on a new directory cannot both proceed.
	lock, err := os.OpenFile(filepath.Join(abs, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir %s: not writable: %w", abs, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("data dir %s: in use by another strata process (%v)", abs, err)
	}
	d.lock = lock
	if d.fresh {
		data, _ := json.MarshalIndent(marker{Kind: markerKind, CreatedAt: time.Now().UTC(), Version: version}, "", "  ")
		if err := pki.WriteFileAtomic(filepath.Join(abs, markerFile), append(data, '\n'), 0o600); err != nil {
			d.close()
			return nil, fmt.Errorf("data dir %s: not writable: %w", abs, err)
		}
	}
	return d, nil
}

func readMarker(path string) (marker, error) {
	var m marker
	data, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: corrupt marker: %w", path, err)
	}
	return m, nil
}

func (d *dataDir) sub(parts ...string) string {
	return filepath.Join(append([]string{d.path}, parts...)...)
}

func (d *dataDir) close() {
	if d.lock != nil {
		d.lock.Close()
	}
}
