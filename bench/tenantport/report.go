package main

import (
	"fmt"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
)

// stage is one column of a target's timeline.
type stage struct {
	name string
	at   func(*sample) time.Time
}

var (
	tenantStages = []stage{
		{"address allocated (Port status.fixedIPs)", func(s *sample) time.Time { return s.allocated }},
		{"pod scheduled (spec.nodeName)", func(s *sample) time.Time { return s.scheduled }},
		{"prober has the IP", func(s *sample) time.Time { return s.probing }},
		{"container running (watch)", func(s *sample) time.Time { return s.running }},
		{"Port ACTIVE on the node", func(s *sample) time.Time { return s.active }},
		{"traffic flowing (first answer)", func(s *sample) time.Time { return s.up }},
	}
	podStages = []stage{
		{"pod scheduled (spec.nodeName)", func(s *sample) time.Time { return s.scheduled }},
		{"prober has the IP (the pod's own)", func(s *sample) time.Time { return s.probing }},
		{"container running (watch)", func(s *sample) time.Time { return s.running }},
		{"podIP in the API (watch)", func(s *sample) time.Time { return s.ipAPI }},
		{"traffic flowing (first answer)", func(s *sample) time.Time { return s.up }},
	}
)

// durations returns, for the samples of kind k, the time from create to
// at (those that got there) and how many samples there are.
func durations(samples []*sample, k kind, at func(*sample) time.Time) (ds []time.Duration, n int) {
	for _, s := range samples {
		if s.kind != k {
			continue
		}
		n++
		if t := at(s); !t.IsZero() {
			ds = append(ds, t.Sub(s.created))
		}
	}
	return ds, n
}

func stats(ds []time.Duration) string {
	if len(ds) == 0 {
		return fmt.Sprintf("%7s %7s %7s", "-", "-", "-")
	}
	return fmt.Sprintf("%7.3f %7.3f %7.3f", benchenv.Percentile(ds, 50).Seconds(), benchenv.Percentile(ds, 90).Seconds(), benchenv.Percentile(ds, 100).Seconds())
}

func report(warm, samples []*sample, cfg config) {
	fmt.Printf("\ntime from the create call, in seconds (p50 / p90 / max, nearest rank; this client's clock: watch events, and the prober's log lines by their kubelet timestamps)\n")
	for _, s := range warm {
		up := "not reached"
		if !s.up.IsZero() {
			up = fmt.Sprintf("%.3f s", s.up.Sub(s.created).Seconds())
		}
		fmt.Printf("  warm-up %s (%s): traffic flowing after %s\n", s.name, s.kind, up)
	}
	table := func(title string, k kind, stages []stage) {
		fmt.Printf("\n%s\n  %-42s %7s %7s %7s\n", title, "stage", "p50", "p90", "max")
		for _, st := range stages {
			ds, n := durations(samples, k, st.at)
			missing := ""
			if len(ds) < n {
				missing = fmt.Sprintf("  (%d of %d never seen)", n-len(ds), n)
			}
			fmt.Printf("  %-42s %s%s\n", st.name, stats(ds), missing)
		}
	}
	table(fmt.Sprintf("tenant network %s: Port create -> ... (the pod using it is created right after the Port)", network), tenant, tenantStages)
	table("pod network (baseline): pod create -> ...", podNet, podStages)

	up := func(s *sample) time.Time { return s.up }
	tUp, tn := durations(samples, tenant, up)
	pUp, pn := durations(samples, podNet, up)
	fmt.Println()
	if len(tUp) == 0 || len(pUp) == 0 {
		fmt.Printf("Port create -> traffic flowing on the node: %d of %d tenant targets and %d of %d plain pods answered; no figure\n", len(tUp), tn, len(pUp), pn)
		return
	}
	ratio := func(p float64) float64 {
		return benchenv.Percentile(tUp, p).Seconds() / benchenv.Percentile(pUp, p).Seconds()
	}
	reached := ""
	if len(tUp) < tn || len(pUp) < pn {
		reached = fmt.Sprintf(" (answered: %d of %d Ports, %d of %d plain pods)", len(tUp), tn, len(pUp), pn)
	}
	fmt.Printf("Port create -> traffic flowing on the node, %d Ports one after another: p50 %.2f s, p90 %.2f s, max %.2f s; "+
		"plain pod on the pod network, create -> traffic: p50 %.2f s, p90 %.2f s, max %.2f s; tenant/pod network: p50 %.2f x, p90 %.2f x, max %.2f x%s\n",
		tn, benchenv.Percentile(tUp, 50).Seconds(), benchenv.Percentile(tUp, 90).Seconds(), benchenv.Percentile(tUp, 100).Seconds(),
		benchenv.Percentile(pUp, 50).Seconds(), benchenv.Percentile(pUp, 90).Seconds(), benchenv.Percentile(pUp, 100).Seconds(),
		ratio(50), ratio(90), ratio(100), reached)
	if cfg.arpRetrans > 0 {
		fmt.Printf("(probers' ARP retransmit time %d ms; the kernel's default 1 s would add up to 1 s to a target probed before it existed)\n", cfg.arpRetrans)
	}
}
