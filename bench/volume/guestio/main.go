// Command guestio measures the IO of a block device or a file, for
// bench/volume: it runs inside the bench's test VM (in its initramfs, as
// /bin/guestio) on a hot-plugged Volume and on the host on a file beside
// the Volume's, and prints its figures on one line:
//
//	guestio: path=/dev/vdc direct=1 mib=128 seqwrite_mibps=.. seqread_mibps=.. randread_iops=.. randread_p50_us=.. randread_p99_us=.. randwrite_iops=.. randwrite_p50_us=.. randwrite_p99_us=.. randwrite_fsync_ms=..
//
//	guestio [-mib 128] [-dur 5s] [-size-mib N] [-direct=false] PATH
//
// One thread, one request in flight, with O_DIRECT (no page cache of the
// system it runs on; -direct=false: through the page cache) and
// page-aligned buffers (mmap'd):
//   - seqwrite: -mib MiB in 1 MiB writes from offset 0, then fsync (timed
//     together);
//   - seqread: the same range in 1 MiB reads;
//   - randread: 4 KiB reads at random 4 KiB-aligned offsets in the first
//     -mib MiB for -dur; IOPS and per-request latency percentiles;
//   - randwrite: 4 KiB writes the same way for -dur, then fsync (counted
//     in the IOPS' time, and printed apart).
//
// Where O_DIRECT is refused (tmpfs) it runs through the page cache and
// says so (direct=0). With -size-mib, a file shorter than that is first
// extended (sparse) to it. It writes over what is there.
package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	mib       = 1 << 20
	seqBlock  = mib
	randBlock = 4096
)

func main() {
	sizeMiB := flag.Int64("mib", 128, "MiB written and read sequentially; the random requests' span")
	dur := flag.Duration("dur", 5*time.Second, "duration of each random phase")
	fileMiB := flag.Int64("size-mib", 0, "extend a shorter file (sparse) to this many MiB first")
	direct := flag.Bool("direct", true, "open PATH with O_DIRECT (false: through the page cache)")
	flag.Parse()
	if flag.NArg() != 1 || *sizeMiB < 1 || *dur <= 0 {
		fmt.Fprintln(os.Stderr, "usage: guestio [-mib N] [-dur D] [-size-mib N] [-direct=false] PATH")
		os.Exit(2)
	}
	out, err := run(flag.Arg(0), *sizeMiB, *fileMiB, *dur, *direct)
	if err != nil {
		// One line the bench can find, whatever went wrong.
		fmt.Printf("guestio: path=%s error=%q\n", flag.Arg(0), err.Error())
		os.Exit(1)
	}
	fmt.Println("guestio: " + strings.Join(out, " "))
}

func run(path string, sizeMiB, fileMiB int64, dur time.Duration, direct bool) ([]string, error) {
	flags := unix.O_RDWR | unix.O_CREAT | unix.O_CLOEXEC
	if direct {
		flags |= unix.O_DIRECT
	}
	fd, err := unix.Open(path, flags, 0o600)
	if direct && errors.Is(err, unix.EINVAL) {
		fmt.Fprintf(os.Stderr, "guestio: %s refuses O_DIRECT; measuring through the page cache\n", path)
		direct = false
		fd, err = unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size < fileMiB*mib {
		if err := unix.Ftruncate(fd, fileMiB*mib); err != nil {
			return nil, fmt.Errorf("extend %s: %w", path, err)
		}
	}
	size, err := unix.Seek(fd, 0, 2) // SEEK_END: a block device's size too
	if err != nil {
		return nil, err
	}
	span := sizeMiB * mib
	if size < span {
		return nil, fmt.Errorf("%s has %d MiB, want at least %d", path, size/mib, sizeMiB)
	}
	buf, err := unix.Mmap(-1, 0, seqBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(buf)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	out := []string{"path=" + path, fmt.Sprintf("direct=%d", btoi(direct)), fmt.Sprintf("mib=%d", sizeMiB)}

	// Sequential write, then fsync.
	began := time.Now()
	for off := int64(0); off < span; off += seqBlock {
		if err := full(unix.Pwrite, fd, buf, off); err != nil {
			return nil, fmt.Errorf("seqwrite at %d: %w", off, err)
		}
	}
	if err := unix.Fsync(fd); err != nil {
		return nil, fmt.Errorf("fsync: %w", err)
	}
	out = append(out, fmt.Sprintf("seqwrite_mibps=%.1f", float64(sizeMiB)/time.Since(began).Seconds()))

	// Sequential read.
	began = time.Now()
	for off := int64(0); off < span; off += seqBlock {
		if err := full(unix.Pread, fd, buf, off); err != nil {
			return nil, fmt.Errorf("seqread at %d: %w", off, err)
		}
	}
	out = append(out, fmt.Sprintf("seqread_mibps=%.1f", float64(sizeMiB)/time.Since(began).Seconds()))

	// Random 4 KiB reads, then writes.
	small := buf[:randBlock]
	blocks := span / randBlock
	for _, phase := range []struct {
		name string
		op   func(int, []byte, int64) (int, error)
	}{{"randread", unix.Pread}, {"randwrite", unix.Pwrite}} {
		var lat []time.Duration
		began := time.Now()
		end := began.Add(dur)
		for t := began; t.Before(end); {
			off := rng.Int64N(blocks) * randBlock
			if err := full(phase.op, fd, small, off); err != nil {
				return nil, fmt.Errorf("%s at %d: %w", phase.name, off, err)
			}
			now := time.Now()
			lat = append(lat, now.Sub(t))
			t = now
		}
		var fsync time.Duration
		if phase.name == "randwrite" {
			t := time.Now()
			if err := unix.Fsync(fd); err != nil {
				return nil, fmt.Errorf("fsync: %w", err)
			}
			fsync = time.Since(t)
		}
		elapsed := time.Since(began)
		slices.Sort(lat)
		out = append(out,
			fmt.Sprintf("%s_iops=%.0f", phase.name, float64(len(lat))/elapsed.Seconds()),
			fmt.Sprintf("%s_p50_us=%d", phase.name, percentile(lat, 50).Microseconds()),
			fmt.Sprintf("%s_p99_us=%d", phase.name, percentile(lat, 99).Microseconds()))
		if phase.name == "randwrite" {
			out = append(out, fmt.Sprintf("randwrite_fsync_ms=%.1f", float64(fsync.Microseconds())/1000))
		}
	}
	return out, nil
}

// full does op until b is done (a short transfer goes on where it
// stopped; with O_DIRECT that stays aligned in practice).
func full(op func(int, []byte, int64) (int, error), fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := op(fd, b, off)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		if n == 0 {
			return errors.New("end of file")
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}

// percentile is the nearest-rank p-th percentile of sorted xs.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
