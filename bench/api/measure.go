package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"text/tabwriter"
	"time"
)

// result is what one phase measured.
type result struct {
	side, op  string
	n         int
	latencies []time.Duration // successful requests, sorted
	errors    int
	firstErr  error
	elapsed   time.Duration
}

func (r result) throughput() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.latencies)) / r.elapsed.Seconds()
}

func (r result) quantile(q float64) time.Duration { return quantile(r.latencies, q) }

// quantile is the nearest-rank quantile of sorted samples.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runPhase runs p with n concurrent clients for d. Clients start new
// requests until d has passed; requests in flight then finish and count,
// and the elapsed time runs until the last one returns.
func runPhase(ctx context.Context, p phase, n int, d time.Duration) result {
	type worker struct {
		lat      []time.Duration
		errors   int
		firstErr error
	}
	workers := make([]worker, n)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for w := range n {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), uint64(start.UnixNano())))
			me := &workers[w]
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				err := p.do(ctx, w, seq, rnd.Uint64())
				took := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					me.errors++
					if me.firstErr == nil {
						me.firstErr = err
					}
					continue
				}
				me.lat = append(me.lat, took)
			}
		})
	}
	wg.Wait()
	r := result{side: p.side, op: p.op, n: n, elapsed: time.Since(start)}
	for _, w := range workers {
		r.latencies = append(r.latencies, w.lat...)
		r.errors += w.errors
		if r.firstErr == nil {
			r.firstErr = w.firstErr
		}
	}
	slices.Sort(r.latencies)
	return r
}

// analogue maps each apiserver operation to the raw etcd operation that
// underlies it.
var analogue = map[string]string{"create": "put", "get": "get", "list": "range", "update": "put"}

// report prints the two result tables, the ratios and the mutating p99.
func report(out io.Writer, results []result, levels []int) {
	find := func(side, op string, n int) (result, bool) {
		for _, r := range results {
			if r.side == side && r.op == op && r.n == n {
				return r, true
			}
		}
		return result{}, false
	}
	table := func(title, side string, ops []string) {
		fmt.Fprintln(out, title)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "op\tclients\trequests\tops/s\tp50 ms\tp99 ms\terrors\t")
		for _, op := range ops {
			for _, n := range levels {
				r, ok := find(side, op, n)
				if !ok {
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.2f\t%.2f\t%d\t\n",
					op, n, len(r.latencies), r.throughput(), ms(r.quantile(0.50)), ms(r.quantile(0.99)), r.errors)
			}
		}
		tw.Flush()
		for _, r := range results {
			if r.side == side && r.firstErr != nil {
				fmt.Fprintf(out, "  first error in %s N=%d: %v\n", r.op, r.n, r.firstErr)
			}
		}
		fmt.Fprintln(out)
	}
	table("kube-apiserver (client-go, ConfigMaps)", "api", []string{"create", "get", "list", "update"})
	table("embedded etcd (clientv3, raw keys)", "etcd", []string{"put", "get", "range"})

	fmt.Fprintln(out, "apiserver / etcd  (throughput < 1 and p99 > 1 mean the apiserver costs more than etcd alone)")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "api op\tetcd op\tclients\tthroughput ratio\tp99 ratio\t")
	for _, op := range []string{"create", "get", "list", "update"} {
		for _, n := range levels {
			a, ok1 := find("api", op, n)
			e, ok2 := find("etcd", analogue[op], n)
			if !ok1 || !ok2 {
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t\n", op, analogue[op], n,
				ratio(a.throughput(), e.throughput()), ratio(ms(a.quantile(0.99)), ms(e.quantile(0.99))))
		}
	}
	tw.Flush()
	fmt.Fprintln(out)

	// The mutating p99: creates and updates together, at 32 clients or the
	// highest level measured.
	n := slices.Max(levels)
	if slices.Contains(levels, 32) {
		n = 32
	}
	var mutating []time.Duration
	for _, op := range []string{"create", "update"} {
		if r, ok := find("api", op, n); ok {
			mutating = append(mutating, r.latencies...)
		}
	}
	slices.Sort(mutating)
	fmt.Fprintf(out, "mutating p99 at %d clients: %.1f ms (target <= %d ms)\n", n, ms(quantile(mutating, 0.99)), mutatingTarget.Milliseconds())
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", a/b)
}
