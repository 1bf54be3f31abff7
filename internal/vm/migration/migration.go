// Package migration drives a live migration from the source QEMU's side,
// over QMP: it mirrors the source's writable disks into the target's NBD
// exports (only what the overlays hold: the base image is on both nodes),
// in write-blocking mode so that once the mirrors are ready every guest
// write reaches both sides; then it migrates the memory (pre-copy) and,
// when QEMU reports completion (the source paused for the last pass, the
// target about to resume), ends the mirrors. On failure or cancellation the
// migration and mirrors are cancelled and the guest keeps running on the
// source.
package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// Target is where the source QEMU sends the guest: unix socket paths as the
// source QEMU sees them (in its container), connected to the target
// launcher's sockets by whoever set up the migration.
type Target struct {
	MemorySocket string
	NBDSocket    string
	// Disks are the QEMU drive ids to mirror (the writable ones) and the
	// NBD export names on the target (the same ids: see launcher.DiskDevice).
	Disks []string
}

// Progress is what a running migration reports.
type Progress struct {
	// Stage: "mirroring" (disks), then QEMU's migration status ("setup",
	// "active", "device", "completed", "failed", "cancelled").
	Stage string
	// Disk mirror totals over all disks.
	DiskTotal, DiskDone int64
	// Memory: total guest RAM, transferred and remaining bytes, passes
	// over memory so far.
	MemoryTotal, MemoryTransferred, MemoryRemaining int64
	Passes                                          int64
	// Set at completion: QEMU's measured downtime and total time.
	Downtime, Total time.Duration
}

// Options tune a migration.
type Options struct {
	// MaxBandwidth caps the memory stream (bytes/s; 0 = 1 GiB/s, well above
	// QEMU's 128 MiB/s default).
	MaxBandwidth int64
	// DowntimeLimit is the longest pause allowed for the last pass (0 =
	// QEMU's default, 300 ms).
	DowntimeLimit time.Duration
	// Poll is how often progress is read (0 = 250 ms).
	Poll time.Duration
}

type blockJob struct {
	Device string `json:"device"`
	Len    int64  `json:"len"`
	Offset int64  `json:"offset"`
	Ready  bool   `json:"ready"`
	Status string `json:"status"`
}

type migrateInfo struct {
	Status string `json:"status"`
	RAM    *struct {
		Total          int64 `json:"total"`
		Transferred    int64 `json:"transferred"`
		Remaining      int64 `json:"remaining"`
		DirtySyncCount int64 `json:"dirty-sync-count"`
	} `json:"ram"`
	Downtime  int64  `json:"downtime"`
	TotalTime int64  `json:"total-time"`
	ErrorDesc string `json:"error-desc"`
}

func jobID(disk string) string { return "migrate-" + disk }

// Run migrates the guest behind mon to t, calling report with progress
// until it ends. It returns the final progress; an error means the guest
// still runs on the source. Cancelling ctx cancels the migration.
func Run(ctx context.Context, mon *qmp.Client, t Target, o Options, report func(Progress)) (Progress, error) {
	if o.MaxBandwidth == 0 {
		o.MaxBandwidth = 1 << 30
	}
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	p := Progress{Stage: "mirroring"}
	exec := func(cmd string, args, result any) error {
		// Commands must reach QEMU even when ctx is already cancelled:
		// the clean-up runs on a context of its own.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		return mon.Execute(cctx, cmd, args, result)
	}
	started := []string{}
	cleanup := func() {
		exec("migrate_cancel", nil, nil)
		for _, d := range started {
			exec("block-job-cancel", map[string]any{"device": jobID(d), "force": true}, nil)
		}
	}

	// 1. Mirror the disks until every mirror is ready (in sync).
	for _, d := range t.Disks {
		args := map[string]any{
			"job-id": jobID(d), "device": d,
			"target": fmt.Sprintf("nbd+unix:///%s?socket=%s", d, t.NBDSocket),
			"format": "raw", "sync": "top", "mode": "existing", "copy-mode": "write-blocking",
		}
		if err := exec("drive-mirror", args, nil); err != nil {
			cleanup()
			return p, fmt.Errorf("mirror disk %s to the target: %w", d, err)
		}
		started = append(started, d)
	}
	tick := time.NewTicker(o.Poll)
	defer tick.Stop()
	for len(t.Disks) > 0 {
		var jobs []blockJob
		if err := exec("query-block-jobs", nil, &jobs); err != nil {
			cleanup()
			return p, err
		}
		ready := 0
		p.DiskTotal, p.DiskDone = 0, 0
		for _, j := range jobs {
			p.DiskTotal += j.Len
			p.DiskDone += j.Offset
			if j.Ready {
				ready++
			}
		}
		if len(jobs) < len(t.Disks) {
			cleanup()
			return p, errors.New("a disk mirror ended before it was ready (see the source launcher's log)")
		}
		report(p)
		if ready == len(t.Disks) {
			break
		}
		select {
		case <-ctx.Done():
			cleanup()
			return p, fmt.Errorf("migration cancelled while mirroring disks: %w", ctx.Err())
		case <-tick.C:
		}
	}

	// 2. Memory.
	params := map[string]any{"max-bandwidth": o.MaxBandwidth}
	if o.DowntimeLimit > 0 {
		params["downtime-limit"] = o.DowntimeLimit.Milliseconds()
	}
	if err := exec("migrate-set-parameters", params, nil); err != nil {
		cleanup()
		return p, err
	}
	if err := exec("migrate", map[string]any{"uri": "unix:" + t.MemorySocket}, nil); err != nil {
		cleanup()
		return p, fmt.Errorf("start migrating memory: %w", err)
	}
	for {
		var info migrateInfo
		if err := exec("query-migrate", nil, &info); err != nil {
			cleanup()
			return p, err
		}
		p.Stage = info.Status
		if info.RAM != nil {
			p.MemoryTotal, p.MemoryTransferred, p.MemoryRemaining = info.RAM.Total, info.RAM.Transferred, info.RAM.Remaining
			p.Passes = info.RAM.DirtySyncCount
		}
		switch info.Status {
		case "completed":
			p.Downtime = time.Duration(info.Downtime) * time.Millisecond
			p.Total = time.Duration(info.TotalTime) * time.Millisecond
			// The source is paused for good: the mirrors are in sync and
			// can go (a ready mirror cancels without losing anything).
			for _, d := range started {
				exec("block-job-cancel", map[string]any{"device": jobID(d)}, nil)
			}
			report(p)
			return p, nil
		case "failed", "cancelled":
			cleanup()
			report(p)
			msg := info.ErrorDesc
			if msg == "" {
				msg = info.Status
			}
			return p, fmt.Errorf("memory migration %s", msg)
		}
		report(p)
		select {
		case <-ctx.Done():
			cleanup()
			return p, fmt.Errorf("migration cancelled: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Decode is a helper for tests and callers that keep progress as JSON.
func (p Progress) String() string {
	b, _ := json.Marshal(p)
	return string(b)
}
