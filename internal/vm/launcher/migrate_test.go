package launcher

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/vm/migration"
	"github.com/strata-cloud/strata/internal/vm/qmp"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// TestLiveMigration moves a running guest from one launcher to another
// (an --incoming one) with internal/vm/migration, as two nodes' launchers
// would: the disk's own data (written by the guest on the source) arrives
// on the target's overlay, the guest runs on the target and powers off
// there when asked, and the source exits saying the guest left.
func TestLiveMigration(t *testing.T) {
	requireVMTools(t)
	dir := t.TempDir()
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dir, "base.raw")
	if err := testimage.WriteRawDisk(base, 16<<20); err != nil {
		t.Fatal(err)
	}
	const marker = "written-on-the-source"
	spec := func(disk string) Spec {
		return Spec{
			Name: "mig-vm", VCPUs: 1, MemoryMiB: 128,
			Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append,
			Disks:     []Disk{{Path: disk, BackingFile: base, SizeBytes: 32 << 20}},
			CloudInit: &CloudInit{InstanceID: "i-mig", Hostname: "mig", UserData: "#!/bin/sh\nprintf " + marker + " | dd of=/dev/vda bs=1M seek=20 conv=notrunc 2>/dev/null\nsync\necho STRATA-WROTE-DISK\n"},
		}
	}
	srcDisk, dstDisk := filepath.Join(dir, "src.qcow2"), filepath.Join(dir, "dst.qcow2")
	src := startLauncher(t, spec(srcDisk), "--grace-period", "30s")
	src.waitFor(t, "STRATA-WROTE-DISK", 90*time.Second)
	src.waitFor(t, testimage.Marker, 90*time.Second)
	dst := startLauncher(t, spec(dstDisk), "--incoming", "--grace-period", "30s")
	dst.waitFor(t, "waiting for a migration", 30*time.Second)
	if st := dst.status(t); st.Phase != PhaseIncoming {
		t.Fatalf("target status %+v, want phase %s", st, PhaseIncoming)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mon, err := qmp.Dial(ctx, filepath.Join(src.runDir, AdminQMPSocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	var reports []migration.Progress
	began := time.Now()
	p, err := migration.Run(ctx, mon, migration.Target{
		MemorySocket: filepath.Join(dst.runDir, MigrateInSocket),
		NBDSocket:    filepath.Join(dst.runDir, NBDSocket),
		Disks:        []string{DiskDevice(0)},
	}, migration.Options{}, func(p migration.Progress) { reports = append(reports, p) })
	if err != nil {
		t.Fatalf("migration: %v", err)
	}
	t.Logf("migrated in %s (QEMU: total %s, downtime %s, %d passes, %d of %d bytes of RAM sent, disk %d bytes mirrored)",
		time.Since(began).Round(time.Millisecond), p.Total, p.Downtime, p.Passes, p.MemoryTransferred, p.MemoryTotal, p.DiskDone)
	if p.Stage != "completed" || len(reports) < 2 {
		t.Errorf("final progress %+v after %d reports", p, len(reports))
	}
	dst.waitFor(t, "the migrated guest runs here now", 30*time.Second)
	if st := dst.status(t); st.Phase != PhaseRunning {
		t.Errorf("target status after migration %+v", st)
	}
	if out := dst.output(); strings.Contains(out, "conflict") || strings.Contains(out, "resume the migrated guest") {
		t.Errorf("the target's disks or resume failed:\n%s", out)
	}
	// The guest's write on the source is in the target's overlay.
	if b, err := os.ReadFile(dstDisk); err != nil || !bytes.Contains(b, []byte(marker)) {
		t.Errorf("the target's disk lacks what the guest wrote on the source (%v)", err)
	}

	// The source has nothing left to run: it quits at once and drops its copy.
	src.cmd.Process.Signal(syscall.SIGTERM)
	if code := src.wait(t, 30*time.Second); code != ExitOK {
		t.Errorf("source exit code %d", code)
	}
	if !strings.Contains(src.output(), "migrated away") {
		t.Error("the source does not say the guest migrated away")
	}
	if _, err := os.Stat(srcDisk); !os.IsNotExist(err) {
		t.Errorf("the source's disk copy is still there (%v)", err)
	}
	// The guest lives on the target: the power button works there.
	dst.cmd.Process.Signal(syscall.SIGTERM)
	if code := dst.wait(t, 60*time.Second); code != ExitOK {
		t.Errorf("target exit code %d", code)
	}
	if !strings.Contains(dst.output(), "guest powered off") {
		t.Error("the migrated guest did not power off on the target")
	}
}
