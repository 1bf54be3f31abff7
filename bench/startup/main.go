// Command startup measures how fast `strata server` becomes ready, cold and
// warm, how much memory it holds once idle, and how long a graceful
// shutdown takes. It prints figures against the targets and never fails
// on them.
//
//	go run ./bench/startup -bin bin/strata [-runs 3] [-idle 2m]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
)

const (
	pollInterval    = 50 * time.Millisecond
	readyTimeout    = 3 * time.Minute
	stopTimeout     = 60 * time.Second
	warmTarget      = 5 * time.Second
	memoryTargetMiB = 350
)

func main() {
	bin := flag.String("bin", "bin/strata", "strata binary to run")
	runs := flag.Int("runs", 3, "warm restarts after the cold start")
	idle := flag.Duration("idle", 2*time.Minute, "how long the server idles before memory is read")
	keep := flag.Bool("keep", false, "keep the temporary data dir and server log")
	flag.Parse()

	benchenv.Main("startup", func(ctx context.Context) error { return run(ctx, *bin, *runs, *idle, *keep) })
}

func run(ctx context.Context, bin string, runs int, idle time.Duration, keep bool) (err error) {
	if runs < 0 {
		return errors.New("-runs must be >= 0")
	}
	root, err := os.MkdirTemp("", "strata-bench-startup-")
	if err != nil {
		return err
	}
	defer func() {
		if keep {
			fmt.Printf("data dir and server log kept in %s\n", root)
			return
		}
		os.RemoveAll(root)
	}()
	opts := benchenv.Options{
		Bin:     bin,
		DataDir: filepath.Join(root, "data"),
		LogPath: filepath.Join(root, "server.log"),
	}

	fmt.Printf("strata startup benchmark\n  binary: %s\n  cpus: %d   load average: %s   warm runs: %d   idle: %s   /readyz poll: every %s with the admin client cert\n\n",
		bin, runtime.NumCPU(), benchenv.LoadAverage(), runs, idle, pollInterval)

	var (
		srv  *benchenv.Server
		warm []time.Duration
	)
	// Whatever happens, leave no server behind.
	defer func() {
		if srv != nil {
			srv.Stop(stopTimeout)
		}
	}()

	for i := 0; i <= runs; i++ {
		label := "cold start (empty data dir)"
		if i > 0 {
			label = fmt.Sprintf("warm restart %d", i)
		}
		if srv, err = benchenv.Start(opts); err != nil {
			return err
		}
		opts = srv.Options() // the same ports on every restart
		ready, err := srv.WaitReady(ctx, pollInterval, readyTimeout)
		if err != nil {
			return fmt.Errorf("%s: %w", label, err)
		}
		if i > 0 {
			warm = append(warm, ready)
		}
		if i == runs {
			fmt.Printf("%-30s ready in %6.2f s   (left running)\n", label+":", ready.Seconds())
			break
		}
		took, err := srv.Stop(stopTimeout)
		srv = nil
		if err != nil {
			return fmt.Errorf("%s: stop: %w", label, err)
		}
		fmt.Printf("%-30s ready in %6.2f s   (SIGTERM -> exit 0 in %.2f s)\n", label+":", ready.Seconds(), took.Seconds())
	}
	if len(warm) > 0 {
		m := median(warm)
		fmt.Printf("\nmedian warm start to /readyz: %.2f s (target <= %.0f s: %s)\n", m.Seconds(), warmTarget.Seconds(), benchenv.Verdict(m <= warmTarget))
	}

	pid := srv.PID()
	if rss, pss, err := benchenv.ProcMemory(pid); err == nil {
		fmt.Printf("\nmemory just after ready:  RSS %6.1f MB   PSS %6.1f MB\n", rss, pss)
	}
	fmt.Printf("idling %s (pid %d) ...\n", idle, pid)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(idle):
	}
	fmt.Printf("load average now: %s\n", benchenv.LoadAverage())
	rss, pss, err := benchenv.ProcMemory(pid)
	if err != nil {
		return fmt.Errorf("memory of pid %d: %w", pid, err)
	}
	fmt.Printf("memory after %s idle: RSS %6.1f MB   PSS %6.1f MB   (target <= %d MB: RSS %s, PSS %s; MB = 2^20 bytes)\n",
		idle, rss, pss, memoryTargetMiB, benchenv.Verdict(rss <= memoryTargetMiB), benchenv.Verdict(pss <= memoryTargetMiB))

	took, err := srv.Stop(stopTimeout)
	srv = nil
	if err != nil {
		return fmt.Errorf("graceful shutdown after idle: %w", err)
	}
	fmt.Printf("graceful shutdown (SIGTERM -> exit 0): %.2f s\n", took.Seconds())
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}
