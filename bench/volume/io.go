package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strata-cloud/strata/bench/benchenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// Console lines of the user-data (prefix "volbench: ") and of the
// launcher.
const (
	guestPrefix  = "volbench: "
	disksPrefix  = guestPrefix + "disks t="
	guestioLine  = "guestio: "
	accelMarker  = ": accelerator "
	launcherLine = "strata-launcher:"
)

// userData runs guestio on the disk whose serial is the IO Volume's name,
// then — in the background, so that init goes on to print the marker —
// prints the guest's virtio disks (vdX=serial) with its uptime whenever
// they change, polling every 0.1 s without forking for the reads.
func userData(cfg config) string {
	return `#!/bin/sh
say() { echo "` + guestPrefix + `$*"; }
dev=""
i=0
while [ -z "$dev" ] && [ $i -lt 300 ]; do
	for d in /sys/block/vd*; do
		s=""
		{ read s < "$d/serial"; } 2>/dev/null
		[ "$s" = "` + ioVolume + `" ] && dev=/dev/${d##*/}
	done
	[ -n "$dev" ] || { sleep 0.1; i=$((i+1)); }
done
if [ -z "$dev" ]; then
	say "no disk with serial ` + ioVolume + `"
else
	say "guestio on $dev, $(nproc) cpu(s), $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB"
	/` + guestioPath + ` -mib ` + strconv.FormatInt(cfg.ioMiB, 10) + ` -dur ` + cfg.ioDur.String() + ` $dev
fi
(
last=""
while :; do
	cur=""
	for d in /sys/block/vd*; do
		s=""
		{ read s < "$d/serial"; } 2>/dev/null
		[ -e "$d" ] && cur="$cur ${d##*/}=$s"
	done
	if [ "$cur" != "$last" ]; then
		read up idle < /proc/uptime
		echo "` + disksPrefix + `$up$cur"
		last="$cur"
	fi
	sleep 0.1
done
) &
`
}

// diskList is one "disks" line of the guest: when the kubelet logged it,
// the guest's uptime, and its disks, device -> serial.
type diskList struct {
	at     time.Time
	uptime string
	disks  map[string]string
}

func (d diskList) has(serial string) bool {
	for _, s := range d.disks {
		if s == serial {
			return true
		}
	}
	return false
}

func (d diskList) device(serial string) string {
	for dev, s := range d.disks {
		if s == serial {
			return dev
		}
	}
	return ""
}

// console is what the bench reads from the launcher's log.
type console struct {
	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) when a field changes
	accel   string
	guestio string
	marker  time.Time
	lists   []diskList
	tail    []string // the last lines, for errors
}

func newConsole() *console { return &console{changed: make(chan struct{})} }

func (c *console) line(at time.Time, text string) bool {
	text = strings.TrimRight(text, "\r")
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tail = append(c.tail, text)
	if len(c.tail) > 20 {
		c.tail = c.tail[1:]
	}
	switch {
	case strings.HasPrefix(text, launcherLine):
		if _, a, ok := strings.Cut(text, accelMarker); ok && c.accel == "" {
			c.accel = a
		}
		return true
	case strings.HasPrefix(text, guestioLine) && c.guestio == "":
		c.guestio = text
	case strings.HasPrefix(text, disksPrefix):
		f := strings.Fields(strings.TrimPrefix(text, disksPrefix))
		if len(f) == 0 {
			return true
		}
		l := diskList{at: at, uptime: f[0], disks: map[string]string{}}
		for _, d := range f[1:] {
			dev, serial, _ := strings.Cut(d, "=")
			l.disks[dev] = serial
		}
		c.lists = append(c.lists, l)
	case strings.Contains(text, testimage.Marker) && c.marker.IsZero():
		c.marker = at
	default:
		return true
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return true
}

// wait waits until ok (called under the lock) holds or timeout passes.
func (c *console) wait(ctx context.Context, timeout time.Duration, ok func() bool) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		done, ch := ok(), c.changed
		c.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("not seen on the VM's console within %s; its last lines:\n%s", timeout, c.lastLines())
		}
	}
}

func (c *console) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, "\n")
}

// firstList waits for the first disk list logged at or after since for
// which ok holds.
func (c *console) firstList(ctx context.Context, since time.Time, timeout time.Duration, ok func(diskList) bool) (diskList, error) {
	var found diskList
	err := c.wait(ctx, timeout, func() bool {
		for _, l := range c.lists {
			if !l.at.Before(since) && ok(l) {
				found = l
				return true
			}
		}
		return false
	})
	return found, err
}

// lastList is the guest's latest disk list.
func (c *console) lastList() (diskList, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lists) == 0 {
		return diskList{}, false
	}
	return c.lists[len(c.lists)-1], true
}

// ioResult is one guestio line, key -> value.
type ioResult map[string]string

func parseGuestio(line string) (ioResult, error) {
	rest := strings.TrimPrefix(strings.TrimSpace(line), guestioLine)
	if i := strings.Index(rest, "error="); i >= 0 {
		return nil, fmt.Errorf("guestio failed: %s", rest[i+len("error="):])
	}
	r := ioResult{}
	for _, f := range strings.Fields(rest) {
		k, v, ok := strings.Cut(f, "=")
		if ok {
			r[k] = v
		}
	}
	if r["randwrite_iops"] == "" {
		return nil, fmt.Errorf("guestio line without figures: %q", line)
	}
	return r, nil
}

func (r ioResult) num(k string) (float64, bool) {
	v, err := strconv.ParseFloat(r[k], 64)
	return v, err == nil
}

// measureIO creates the IO and hot-plug Volumes, runs guestio on a host
// file beside the IO Volume's, then boots the VM with the IO Volume and
// reads guestio's line from its console. It prints the table and returns
// the console, which the VM's log keeps feeding, for the hot-plug rounds.
func (b *bench) measureIO(ctx context.Context) (*console, error) {
	size := fmt.Sprintf("%dMi", b.cfg.volumeMiB)
	if err := b.createVolume(ctx, ioVolume, size); err != nil {
		return nil, err
	}
	if err := b.createVolume(ctx, hotVolume, fmt.Sprintf("%dMi", hotMiB)); err != nil {
		return nil, err
	}
	for _, v := range []string{ioVolume, hotVolume} {
		if _, err := b.waitVolume(ctx, v, 2*time.Minute, available); err != nil {
			return nil, err
		}
	}
	vol, err := b.getVolume(ctx, ioVolume)
	if err != nil {
		return nil, err
	}
	if vol == nil || vol.Status.Path == "" {
		return nil, fmt.Errorf("Volume %s has no status.path: %s", ioVolume, describeVolume(vol))
	}
	if _, err := os.Stat(vol.Status.Path); err != nil {
		return nil, fmt.Errorf("Volume %s's file: %w", ioVolume, err)
	}
	fs := filesystemOf(vol.Status.Path)
	fmt.Printf("\nIO Volume %s: %d MiB raw, file %s (%s)\n", ioVolume, b.cfg.volumeMiB, vol.Status.Path, fs)

	// The host's figures first, while no VM runs: O_DIRECT, and through
	// the page cache (as QEMU opens the Volume's file).
	host, err := b.hostIO(ctx, filepath.Dir(vol.Status.Path), true)
	if err != nil {
		return nil, err
	}
	cached, err := b.hostIO(ctx, filepath.Dir(vol.Status.Path), false)
	if err != nil {
		return nil, err
	}

	// The VM.
	con := newConsole()
	load := benchenv.LoadAverage()
	began := time.Now()
	if err := b.createVM(ctx, userData(b.cfg)); err != nil {
		return nil, err
	}
	fmt.Printf("VM %s (1 vCPU, %d MiB) created with Volume %s, load average %s; waiting for guestio's line ...\n", vmName, b.cfg.memoryMiB, ioVolume, load)
	// The follower lives as long as the bench's context (run cancels it
	// at the end): the hot-plug rounds read the same console.
	go benchenv.FollowPodLog(ctx, b.node.Client, namespace, launcherPod(vmName), launcherContainer, con.line)
	if err := con.wait(ctx, b.cfg.bootTimeout, func() bool { return con.guestio != "" }); err != nil {
		var pod *corev1.Pod
		if p, perr := b.node.Client.CoreV1().Pods(namespace).Get(ctx, launcherPod(vmName), metav1.GetOptions{}); perr == nil {
			pod = p
		}
		return nil, fmt.Errorf("guestio in the VM: %w (launcher pod phase %s)", err, podPhase(pod))
	}
	con.mu.Lock()
	line, accel := con.guestio, con.accel
	con.mu.Unlock()
	fmt.Printf("  %s\n  (%.1f s after create)\n", line, time.Since(began).Seconds())
	vm, err := parseGuestio(line)
	if err != nil {
		// Not a figure: the IO could not run at all.
		return nil, err
	}
	opens := qemuOpens(b.node.DataDir(), vol.Status.Path)
	printIO(b.cfg, accel, fs, opens, vm, host, cached)
	return con, nil
}

// hostIO runs guestio on a new sparse file as large as the IO Volume in
// dir, with O_DIRECT or through the page cache, and removes the file.
func (b *bench) hostIO(ctx context.Context, dir string, direct bool) (ioResult, error) {
	file := filepath.Join(dir, "bench-hostio.raw")
	how := "O_DIRECT"
	if !direct {
		how = "through the page cache"
	}
	fmt.Printf("host: guestio on %s (%d MiB, sparse), %s, load average %s ...\n", file, b.cfg.volumeMiB, how, benchenv.LoadAverage())
	cmd := exec.CommandContext(ctx, b.guestio, "-mib", fmt.Sprint(b.cfg.ioMiB), "-dur", b.cfg.ioDur.String(),
		"-size-mib", fmt.Sprint(b.cfg.volumeMiB), fmt.Sprintf("-direct=%t", direct), file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	os.Remove(file)
	if err != nil {
		return nil, fmt.Errorf("guestio on the host: %v: %s%s", err, out, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		fmt.Printf("  %s\n", s)
	}
	fmt.Printf("  %s", out)
	return parseGuestio(string(out))
}

func podPhase(p *corev1.Pod) string {
	if p == nil {
		return "unknown"
	}
	return string(p.Status.Phase)
}

// filesystemOf names the filesystem path is on, from /proc/self/mountinfo
// (the longest mount point that is a prefix of path).
func filesystemOf(path string) string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "filesystem unknown"
	}
	best, fs := "", "filesystem unknown"
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		mp := f[4]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, fs = mp, fmt.Sprintf("%s on %s, mounted at %s", f[sep+1], f[sep+2], mp)
		}
	}
	return fs
}

// printIO prints the in-VM and host figures side by side.
func printIO(cfg config, accel, fs, opens string, vm, host, cached ioResult) {
	fmt.Printf("\nVolume IO in a VM vs the host file: %d MiB sequential in 1 MiB requests, random 4 KiB requests for %s each over the first %d MiB, one request in flight, O_DIRECT (guest direct=%s, host direct=%s)\n",
		cfg.ioMiB, cfg.ioDur, cfg.ioMiB, vm["direct"], host["direct"])
	fmt.Printf("  QEMU accelerator: %s\n", orUnknown(accel))
	fmt.Printf("  guest: 1 vCPU, %d MiB; the Volume is a virtio-blk disk over its raw file, which QEMU has open %s\n", cfg.memoryMiB, opens)
	fmt.Printf("  host: a file beside the Volume's (%s), opened O_DIRECT; and, for reference, through the page cache\n", fs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "figure\tin VM (TCG)\thost file\tVM / host\thost file, page cache\t")
	rows := []struct {
		name, key, unit string
	}{
		{"sequential write (+ fsync)", "seqwrite_mibps", "MiB/s"},
		{"sequential read", "seqread_mibps", "MiB/s"},
		{"random 4 KiB read", "randread_iops", "IOPS"},
		{"  latency p50", "randread_p50_us", "µs"},
		{"  latency p99", "randread_p99_us", "µs"},
		{"random 4 KiB write", "randwrite_iops", "IOPS"},
		{"  latency p50", "randwrite_p50_us", "µs"},
		{"  latency p99", "randwrite_p99_us", "µs"},
		{"  fsync after it", "randwrite_fsync_ms", "ms"},
	}
	for _, r := range rows {
		v, vok := vm.num(r.key)
		h, hok := host.num(r.key)
		ratio := "-"
		if vok && hok && h > 0 {
			ratio = fmt.Sprintf("%.2f", v/h)
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\t\n", r.name, r.unit, vm[r.key], host[r.key], ratio, cached[r.key])
	}
	tw.Flush()
	fmt.Printf("  (VM / host, against the O_DIRECT host file: below 1 is slower in the VM for MiB/s and IOPS, above 1 slower for latencies)\n")
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown (no accelerator line in the launcher's log)"
	}
	return s
}
