package benchenv

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcKB reads a "Name:   1234 kB" line of a /proc file (status,
// smaps_rollup, meminfo), in kB.
func ProcKB(path, name string) (float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[0] == name && fields[2] == "kB" {
			kb, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, name, err)
			}
			return kb, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s line", path, name)
}

// ProcMemory reads a process's resident and proportional set sizes
// (VmRSS of /proc/PID/status, Pss of /proc/PID/smaps_rollup) in MiB.
// Kernel threads and zombies have none: an error, as for a process gone.
func ProcMemory(pid int) (rss, pss float64, err error) {
	if rss, err = ProcKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"); err != nil {
		return 0, 0, err
	}
	if pss, err = ProcKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:"); err != nil {
		return 0, 0, err
	}
	return rss / 1024, pss / 1024, nil
}
