package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/testenv"
)

// Process groups of a node, as the memory table lists them.
const (
	groupServer     = "strata server (main process)"
	groupContainerd = "containerd (strata containerd)"
	groupShims      = "runc shims"
	groupOther      = "other strata processes"
	groupContainers = "container processes (pause + pods)"
)

var groupOrder = []string{groupServer, groupContainerd, groupShims, groupOther, groupContainers}

type memGroup struct {
	procs    int
	rss, pss float64 // MiB
}

type memReport struct {
	groups map[string]*memGroup
	others []string // command lines of groupOther
	skip   int      // processes gone before they could be read
}

// measureMemory sums RSS (VmRSS) and PSS (smaps_rollup) over every process
// of the node: the server, its containerd child, the shims (re-parented to
// the server) and the containers below them. A process running the strata
// binary counts as Strata's own; anything else under the tree is a
// container's.
func measureMemory(srv *testenv.Server, bin string) (*memReport, error) {
	self, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return nil, err
	}
	serverPID := srv.PID()
	if serverPID == 0 {
		return nil, fmt.Errorf("server is not running")
	}
	rep := &memReport{groups: map[string]*memGroup{}}
	for _, g := range groupOrder {
		rep.groups[g] = &memGroup{}
	}
	for _, pid := range testenv.NodeProcesses(srv.DataDir()) {
		rss, pss, err := benchenv.ProcMemory(pid)
		if err != nil {
			// Kernel threads and zombies have no VmRSS; gone processes nothing.
			rep.skip++
			continue
		}
		group := classify(pid, serverPID, self)
		if group == groupOther {
			rep.others = append(rep.others, fmt.Sprintf("%d: %s", pid, strings.Join(benchenv.Cmdline(pid), " ")))
		}
		g := rep.groups[group]
		g.procs++
		g.rss += rss
		g.pss += pss
	}
	return rep, nil
}

func classify(pid, serverPID int, self string) string {
	if pid == serverPID {
		return groupServer
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return groupContainers
	}
	exe = strings.TrimSuffix(exe, " (deleted)")
	args := benchenv.Cmdline(pid)
	// The small shim strata embeds and installs per node
	// (internal/agent/helperbin): containerd-shim-runc-v2-<hash>.
	if strings.HasPrefix(filepath.Base(exe), "containerd-shim-runc-v2") && slices.Contains(args, "-namespace") && slices.Contains(args, "-id") {
		return groupShims
	}
	if exe != self {
		return groupContainers
	}
	switch {
	case len(args) > 1 && args[1] == "containerd":
		return groupContainerd
	case slices.Contains(args, "-namespace") && slices.Contains(args, "-id"):
		return groupShims
	}
	return groupOther
}

func printMemory(rep *memReport, idle time.Duration) {
	fmt.Printf("\nmemory with %d pods running, after %s idle (MB = 2^20 bytes; PSS shares each mapped page among the processes mapping it)\n", memoryPods, idle)
	fmt.Printf("%-38s %6s %10s %10s\n", "processes", "count", "RSS MB", "PSS MB")
	var own memGroup
	for _, name := range groupOrder {
		g := rep.groups[name]
		if name == groupContainers {
			fmt.Printf("%-38s %6d %10.1f %10.1f\n", "= server + agent (Strata's processes)", own.procs, own.rss, own.pss)
		}
		fmt.Printf("%-38s %6d %10.1f %10.1f\n", name, g.procs, g.rss, g.pss)
		if name != groupContainers {
			own.procs += g.procs
			own.rss += g.rss
			own.pss += g.pss
		}
	}
	for _, o := range rep.others {
		fmt.Printf("  other: %.160s\n", o)
	}
	if rep.skip > 0 {
		fmt.Printf("(%d processes ended or had no memory to read while measuring)\n", rep.skip)
	}
	fmt.Printf("\nserver + agent PSS with %d pods idle: %.1f MB (target <= %d MB: %s); RSS %.1f MB\n",
		memoryPods, own.pss, memTargetMiB, benchenv.Verdict(own.pss <= memTargetMiB), own.rss)
}
