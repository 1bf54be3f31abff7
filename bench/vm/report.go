package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
)

// since is t's offset from the create call in seconds, "-" when unknown.
func since(v *vmBoot, t time.Time, prec int) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%.*f", prec, t.Sub(v.create).Seconds())
}

func (v *vmBoot) image() string {
	switch {
	case !v.pullKnown:
		return "?"
	case v.cached:
		return "cached"
	}
	return fmt.Sprintf("%.2f s", v.pull.Seconds())
}

// stage is one step of a VM's start, measured between two of its times.
type stage struct {
	name, what string
	from, to   func(*vmBoot) time.Time
}

var stages = []stage{
	{"controller", "create -> launcher pod (watch)", func(v *vmBoot) time.Time { return v.create }, func(v *vmBoot) time.Time { return v.podSeen }},
	{"scheduler", "launcher pod -> bound to the node (watch)", func(v *vmBoot) time.Time { return v.podSeen }, func(v *vmBoot) time.Time { return v.scheduled }},
	{"pod start", "bound -> launcher's first log line (sandbox, network, image volume, container)", func(v *vmBoot) time.Time { return v.scheduled }, func(v *vmBoot) time.Time { return v.firstLine }},
	{"launcher", "first log line -> \"QEMU started\" (accelerator, root disk overlay, cloud-init seed)", func(v *vmBoot) time.Time { return v.firstLine }, func(v *vmBoot) time.Time { return v.qemuStarted }},
	{"guest boot", "QEMU started -> marker (firmware, kernel, initramfs)", func(v *vmBoot) time.Time { return v.qemuStarted }, func(v *vmBoot) time.Time { return v.marker }},
	{"total", "create -> marker", func(v *vmBoot) time.Time { return v.create }, func(v *vmBoot) time.Time { return v.marker }},
}

func (s stage) durations(vs []*vmBoot) []time.Duration {
	var out []time.Duration
	for _, v := range vs {
		if from, to := s.from(v), s.to(v); !from.IsZero() && !to.IsZero() {
			out = append(out, to.Sub(from))
		}
	}
	return out
}

func printBoots(cfg config, warm *vmBoot, seq, together []*vmBoot) {
	fmt.Printf("\nVM create -> console marker %q, %d vCPU / %d MiB guests (seconds after the create call)\n", "STRATA-VM-BOOTED", 1, cfg.memoryMiB)
	fmt.Printf("  pod, sched, running: this client's watch; [cond], [startedAt]: the API's PodScheduled time and container startedAt (1 s resolution, truncated)\n")
	fmt.Printf("  first line, qemu, marker: the kubelet's timestamps of the container log's lines; image: the image volume's pull (kubelet's Pulled event)\n\n")
	fmt.Printf("%-8s %5s %6s %6s %6s %8s %8s %11s %6s %7s %7s\n", "vm", "load", "pod", "sched", "[cond]", "image", "running", "first line", "[start]", "qemu", "marker")
	row := func(v *vmBoot) {
		fmt.Printf("%-8s %5s %6s %6s %6s %8s %8s %11s %6s %7s %7s\n", v.name, v.load,
			since(v, v.podSeen, 2), since(v, v.scheduled, 2), since(v, v.schedCond, 1), v.image(), since(v, v.running, 2),
			since(v, v.firstLine, 2), since(v, v.startedAt, 1), since(v, v.qemuStarted, 2), since(v, v.marker, 2))
	}
	if warm != nil {
		row(warm)
	}
	for _, v := range seq {
		row(v)
	}
	for _, v := range together {
		row(v)
	}

	rounds := []struct {
		name string
		vs   []*vmBoot
	}{{"warm-up (first VM: image pull, first launcher pod)", nil}, {fmt.Sprintf("%d VMs one after another", len(seq)), seq}, {fmt.Sprintf("%d VMs at once", len(together)), together}}
	if warm != nil {
		rounds[0].vs = []*vmBoot{warm}
	}
	for _, r := range rounds {
		if len(r.vs) == 0 {
			continue
		}
		fmt.Printf("\nstages, %s: p50 / p90 / max in seconds\n", r.name)
		for _, s := range stages {
			ds := s.durations(r.vs)
			fmt.Printf("  %-11s %6.2f / %6.2f / %6.2f   %s\n", s.name, benchenv.Percentile(ds, 50).Seconds(), benchenv.Percentile(ds, 90).Seconds(), benchenv.Percentile(ds, 100).Seconds(), s.what)
		}
	}
	fmt.Println()
	if warm != nil {
		fmt.Printf("VM create -> console marker, warm-up VM (image pull %s): %.2f s\n", warm.image(), warm.marker.Sub(warm.create).Seconds())
	}
	for _, r := range rounds[1:] {
		if len(r.vs) == 0 {
			continue
		}
		ds := stages[len(stages)-1].durations(r.vs)
		p50 := benchenv.Percentile(ds, 50)
		fmt.Printf("VM create -> console marker, %s (TCG): p50 %.2f s (target <= %.0f s: %s; Nova's Rally median with KVM: 8.6 s), p90 %.2f s, max %.2f s\n",
			r.name, p50.Seconds(), bootTarget.Seconds(), benchenv.Verdict(p50 <= bootTarget), benchenv.Percentile(ds, 90).Seconds(), benchenv.Percentile(ds, 100).Seconds())
	}
}

func printMemory(cfg config, rep *memReport) {
	var names []string
	for _, m := range rep.vms {
		for n := range m.procs {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	fmt.Printf("\nmemory of %d launcher pods with %d MiB guests, after %s idle (MiB = 2^20 bytes; PSS of every process in the pod's cgroup)\n", len(rep.vms), cfg.memoryMiB, cfg.idle)
	fmt.Printf("  guest RAM = PSS of QEMU's guest RAM mapping (pages the guest touched); overhead = pod PSS - guest RAM; TCG = translation buffer, part of the overhead\n\n")
	fmt.Printf("%-8s %8s %11s %9s %6s", "vm", "pod PSS", "guest RAM", "overhead", "TCG")
	for _, n := range names {
		fmt.Printf(" %*s", max(len(n), 8), n)
	}
	fmt.Printf(" %6s %15s\n", "shim", "cgroup WS/limit")
	var over, overNoTCG, overShim, vmsPSS []float64
	for _, m := range rep.vms {
		fmt.Printf("%-8s %8.1f %5.1f/%-5.0f %9.1f %6.1f", m.name, m.pss, m.guestRAM, m.guestSize, m.overhead(), m.tcg)
		for _, n := range names {
			fmt.Printf(" %*.1f", max(len(n), 8), m.procs[n])
		}
		ws := "?"
		if m.workingSet >= 0 {
			ws = fmt.Sprintf("%.1f", m.workingSet)
		}
		fmt.Printf(" %6.1f %15s\n", m.shim, ws+"/"+fmt.Sprintf("%.0f", m.limitMiB))
		over = append(over, m.overhead())
		overNoTCG = append(overNoTCG, m.overhead()-m.tcg)
		overShim = append(overShim, m.overhead()+m.shim)
		vmsPSS = append(vmsPSS, m.pss+m.shim)
	}
	p50 := benchenv.Percentile(over, 50)
	fmt.Printf("\nper-VM memory overhead beyond guest RAM: p50 %.1f MiB, max %.1f MiB (target <= %.0f MiB: %s; KubeVirt reports ~180 MiB)\n",
		p50, benchenv.Percentile(over, 100), overheadTarget, benchenv.Verdict(p50 <= overheadTarget))
	fmt.Printf("  with the pod's shim: p50 %.1f MiB; without TCG's translation buffer (KVM has none): p50 %.1f MiB\n",
		benchenv.Percentile(overShim, 50), benchenv.Percentile(overNoTCG, 50))

	m0 := rep.vms[0]
	guest := float64(cfg.memoryMiB)
	reqOverhead := m0.requestMiB - guest
	fmt.Printf("  the controller requests (and limits) guest + %.0f MiB = %.0f MiB per launcher pod: %.1f x the measured overhead (p50)\n",
		reqOverhead, m0.requestMiB, reqOverhead/p50)

	// Memory for VMs: what the running VMs use plus what is still
	// available; everything else (kernel, server, agent) stays.
	var inUse float64
	for _, v := range vmsPSS {
		inUse += v
	}
	forVMs := rep.memAvailable + inUse
	nonVM := rep.memTotal - forVMs
	reserved := rep.memTotal - float64(rep.allocatableMiB)
	node24 := float64(nodeGiB << 10)
	overheadShim := benchenv.Percentile(overShim, 50)
	fmt.Printf("\nVMs per node (MemTotal %.0f MiB, allocatable %d MiB; memory for VMs = MemAvailable %.0f MiB + the %d VMs' PSS with shims %.0f MiB = %.0f MiB; a %d GiB node: same reservations and non-VM use)\n",
		rep.memTotal, rep.allocatableMiB, rep.memAvailable, len(rep.vms), inUse, forVMs, nodeGiB)
	guests := []float64{guest}
	if guest != defaultGuestMiB {
		guests = append(guests, defaultGuestMiB)
	}
	for _, g := range guests {
		request := g + reqOverhead
		perVM := g + overheadShim
		what := ""
		if g != guest {
			what = " (same overhead)"
		}
		fmt.Printf("  %3.0f MiB guests%s: scheduler (allocatable / request %.0f MiB): this node %d, %d GiB node %d; measured (memory for VMs / (guest, all touched, + overhead with shim %.1f MiB)): this node %d, %d GiB node %d\n",
			g, what, request, int(float64(rep.allocatableMiB)/request), nodeGiB, int((node24-reserved)/request),
			overheadShim, int(forVMs/perVM), nodeGiB, int((node24-nonVM)/perVM))
	}
	byCPU := "-"
	if m0.cpuRequestMilli > 0 {
		byCPU = fmt.Sprintf("%d", rep.allocatableCPU/m0.cpuRequestMilli)
	}
	fmt.Printf("  (the scheduler also caps this node at %d pods, and at %s VMs by CPU requests of %dm per vCPU on %dm allocatable)\n",
		rep.allocatablePods, byCPU, m0.cpuRequestMilli, rep.allocatableCPU)
	// The pod's limit is its request: the headroom left to QEMU.
	worst := benchenv.Percentile(over, 100)
	switch {
	case reqOverhead > 2*p50:
		fmt.Printf("  note: the launcher pod's memory overhead request (%.0f MiB) is %.1f x the measured overhead (%.1f MiB): the scheduler fits %.0f%% fewer VMs than memory would allow\n",
			reqOverhead, reqOverhead/p50, p50, 100*(1-(guest+p50)/m0.requestMiB))
	case worst > 0.8*reqOverhead:
		fmt.Printf("  note: the largest measured overhead (%.1f MiB) leaves %.1f MiB below the launcher pod's limit (guest + %.0f MiB); under TCG QEMU's translation buffer may grow to its 1 GiB default (tb-size) and the pod be OOM-killed\n",
			worst, reqOverhead-worst, reqOverhead)
	}
}
