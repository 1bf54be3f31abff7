package main

import (
	"fmt"
	"math"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
)

func millis(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// memoryMoved is the bytes of guest memory sent, 0 when not reported.
func (r *migRun) memoryMoved() int64 {
	if p := r.status.Progress; p != nil {
		return p.MemoryTransferredBytes
	}
	return 0
}

func (r *migRun) diskMoved() int64 {
	if p := r.status.Progress; p != nil {
		return p.DiskDoneBytes
	}
	return 0
}

func (r *migRun) passes() int64 {
	if p := r.status.Progress; p != nil {
		return p.Passes
	}
	return 0
}

// line is the run's figures on one line. Passes are left out when the
// status says 0 (none reported: a completed migration made at least one).
func (r *migRun) line() string {
	passes := ""
	if n := r.passes(); n > 0 {
		passes = fmt.Sprintf(" in %d passes", n)
	}
	outage := "not measured"
	if r.tries > 0 {
		outage = fmt.Sprintf("%s (%d tries, %d failed)", seconds(r.outage), r.tries, r.fails)
	}
	return fmt.Sprintf("%d. %s -> %s: client total %s, QEMU total %s, downtime %d ms, memory moved %s%s, disk mirrored %s, longest outage %s",
		r.n, r.from, r.to, seconds(r.client), seconds(millis(r.status.TotalMillis)), r.status.DowntimeMillis,
		mib(r.memoryMoved()), passes, mib(r.diskMoved()), outage)
}

// figure is one measured quantity over the runs.
type figure struct {
	name string
	of   func(*migRun) float64
	unit func(float64) string
	note string
}

func printRuns(cfg config, usualGap time.Duration, runs []*migRun) {
	secs := func(v float64) string { return fmt.Sprintf("%.2f s", v) }
	ms := func(v float64) string { return fmt.Sprintf("%.0f ms", v) }
	mibs := func(v float64) string { return fmt.Sprintf("%.1f MiB", v) }
	figures := []figure{
		{"client total (create -> Succeeded)", func(r *migRun) float64 { return r.client.Seconds() }, secs, ""},
		{"QEMU total (status.totalMillis)", func(r *migRun) float64 { return float64(r.status.TotalMillis) / 1000 }, secs, ""},
		{"downtime (QEMU, status.downtimeMillis)", func(r *migRun) float64 { return float64(r.status.DowntimeMillis) }, ms, "QEMU's default downtime limit: 300 ms"},
		{"memory moved", func(r *migRun) float64 { return float64(r.memoryMoved()) / (1 << 20) }, mibs, fmt.Sprintf("guest RAM %d MiB", cfg.memoryMiB)},
		{"disk mirrored", func(r *migRun) float64 { return float64(r.diskMoved()) / (1 << 20) }, mibs, "the root disk's overlay"},
		{"longest outage (pinger on a third node)", func(r *migRun) float64 {
			if r.tries == 0 {
				return math.NaN() // not measured: the run ended before
			}
			return r.outage.Seconds()
		}, secs, fmt.Sprintf("usual gap between answers %s", seconds(usualGap))},
	}
	fmt.Printf("\nlive migration, 1 vCPU / %d MiB guest (TCG), %d runs between two netns nodes:\n", cfg.memoryMiB, len(runs))
	for _, r := range runs {
		fmt.Printf("  %s\n", r.line())
	}
	fmt.Println()
	for _, f := range figures {
		vals := values(runs, f.of)
		note := ""
		if f.note != "" {
			note = "  (" + f.note + ")"
		}
		fmt.Printf("  %-42s p50 %-10s max %-10s%s\n", f.name+":", f.unit(benchenv.Percentile(vals, 50)), f.unit(benchenv.Percentile(vals, 100)), note)
	}
	p50 := func(of func(*migRun) float64) float64 { return benchenv.Percentile(values(runs, of), 50) }
	fmt.Printf("\nlive migration of a %d MiB guest between two netns nodes (TCG): p50 %.2f s create -> Succeeded, QEMU downtime p50 %.0f ms, longest outage seen from a third node p50 %.2f s\n",
		cfg.memoryMiB, p50(figures[0].of), p50(figures[2].of), p50(figures[5].of))
}

// values are of's figures of the runs that have one (not NaN).
func values(runs []*migRun, of func(*migRun) float64) []float64 {
	var vals []float64
	for _, r := range runs {
		if v := of(r); !math.IsNaN(v) {
			vals = append(vals, v)
		}
	}
	return vals
}
