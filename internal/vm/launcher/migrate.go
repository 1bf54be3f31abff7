package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// Live migration, the launcher's part. A target launcher (--incoming)
// starts QEMU waiting for the migration stream on MigrateInSocket and
// serves its writable disks over NBD on NBDSocket, so the source can
// mirror what its disks hold beyond the shared base image (the overlay's
// own clusters) before the memory moves. Whoever drives the migration
// (the source node's agent, see internal/vm/migration) connects the
// source QEMU to these two sockets; the launchers never open a network
// connection themselves (their pods' addresses belong to the guests).

// Socket names in the run directory of a migration target.
const (
	MigrateInSocket = "migrate-in.sock"
	NBDSocket       = "nbd.sock"
)

// PhaseIncoming: QEMU waits for a migration.
const PhaseIncoming = "Incoming"

// prepareIncoming exports the writable disks over NBD and makes QEMU
// listen for the migration stream.
func (r *runner) prepareIncoming(ctx context.Context, mon *qmp.Client) error {
	nbd := filepath.Join(r.cfg.RunDir, NBDSocket)
	in := filepath.Join(r.cfg.RunDir, MigrateInSocket)
	for _, s := range []string{nbd, in} {
		os.Remove(s)
	}
	// nbd-server-start takes the legacy socket address form.
	addr := map[string]any{"type": "unix", "data": map[string]any{"path": nbd}}
	if err := mon.Execute(ctx, "nbd-server-start", map[string]any{"addr": addr}, nil); err != nil {
		return fmt.Errorf("nbd-server-start: %w", err)
	}
	for i, d := range r.cfg.Spec.Disks {
		if d.ReadOnly {
			continue
		}
		args := map[string]any{"type": "nbd", "id": DiskDevice(i), "node-name": DiskNodeName(i), "name": DiskDevice(i), "writable": true}
		if err := mon.Execute(ctx, "block-export-add", args, nil); err != nil {
			return fmt.Errorf("export disk %d over NBD: %w", i, err)
		}
	}
	caps := map[string]any{"capabilities": []map[string]any{
		{"capability": "events", "state": true},
		// The disks stay inactive until cont, after the NBD exports (which
		// hold them writable) are gone.
		{"capability": "late-block-activate", "state": true},
	}}
	if err := mon.Execute(ctx, "migrate-set-capabilities", caps, nil); err != nil {
		return fmt.Errorf("migrate-set-capabilities: %w", err)
	}
	if err := mon.Execute(ctx, "migrate-incoming", map[string]any{"uri": "unix:" + in}, nil); err != nil {
		return fmt.Errorf("migrate-incoming: %w", err)
	}
	// The phase first: whoever reads the log line may check the status.
	r.setStatus(func(s *Status) { s.Phase = PhaseIncoming })
	r.logf("waiting for a migration: memory on %s, disks over NBD on %s", in, nbd)
	return nil
}

// migrationEvent logs a MIGRATION event and reports whether it says the
// migration completed.
func (r *runner) migrationEvent(data json.RawMessage) bool {
	var m struct {
		Status string `json:"status"`
	}
	json.Unmarshal(data, &m)
	switch m.Status {
	case "completed", "failed", "cancelled", "active", "device":
		r.logf("migration %s", m.Status)
	}
	return m.Status == "completed"
}

// finishIncoming, once the guest's state has arrived, closes the NBD
// exports (the source wrote its last disk blocks before it finished) and
// resumes the guest here.
func (r *runner) finishIncoming(ctx context.Context, mon *qmp.Client) {
	if err := mon.Execute(ctx, "nbd-server-stop", nil, nil); err != nil {
		r.logf("nbd-server-stop: %v", err)
	}
	if err := mon.Cont(ctx); err != nil {
		r.logf("resume the migrated guest: %v", err)
	}
}

// removeDisks deletes the writable disks this launcher ran the guest on,
// after the guest migrated away: they are stale copies now.
func (r *runner) removeDisks() {
	for _, d := range r.cfg.Spec.Disks {
		if d.ReadOnly || d.BackingFile == "" {
			continue // only overlays the launcher made
		}
		if err := os.Remove(d.Path); err != nil && !os.IsNotExist(err) {
			r.logf("remove %s: %v", d.Path, err)
		}
	}
}
