package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
		rss, err := procKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		if err != nil {
			// Kernel threads and zombies have no VmRSS; gone processes nothing.
			rep.skip++
			continue
		}
		pss, err := procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
		if err != nil {
			rep.skip++
			continue
		}
		group := classify(pid, serverPID, self)
		if group == groupOther {
			rep.others = append(rep.others, fmt.Sprintf("%d: %s", pid, strings.Join(cmdline(pid), " ")))
		}
		g := rep.groups[group]
		g.procs++
		g.rss += rss / 1024
		g.pss += pss / 1024
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
	args := cmdline(pid)
	// The small shim strata embeds and installs per node
	// (internal/agent/helperbin): containerd-shim-runc-v2-<hash>.
	if strings.HasPrefix(filepath.Base(exe), "containerd-shim-runc-v2") && contains(args, "-namespace") && contains(args, "-id") {
		return groupShims
	}
	if exe != self {
		return groupContainers
	}
	switch {
	case len(args) > 1 && args[1] == "containerd":
		return groupContainerd
	case contains(args, "-namespace") && contains(args, "-id"):
		return groupShims
	}
	return groupOther
}

func cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// procKB reads a "Name:   1234 kB" line of a /proc file, in kB.
func procKB(path, name string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[0] == name && fields[2] == "kB" {
			return strconv.ParseFloat(fields[1], 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s line", path, name)
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
		memoryPods, own.pss, memTargetMiB, verdict(own.pss <= memTargetMiB), own.rss)
}
