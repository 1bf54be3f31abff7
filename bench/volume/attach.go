package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/bench/benchenv"
)

// createRounds creates -create-rounds 1 GiB Volumes one after another and
// times create -> Available and delete -> gone.
func (b *bench) createRounds(ctx context.Context) error {
	var created, deleted []time.Duration
	defer func() {
		if len(created) == 0 {
			return
		}
		fmt.Printf("\nVolume create -> Available (%s raw, a Get every 50 ms), %d one after another: p50 %s, max %s\n",
			createSize, len(created), ms(benchenv.Percentile(created, 50)), ms(benchenv.Percentile(created, 100)))
		if len(deleted) > 0 {
			fmt.Printf("Volume delete -> gone (the node agent removes the file, then the finalizer): p50 %s, max %s\n",
				ms(benchenv.Percentile(deleted, 50)), ms(benchenv.Percentile(deleted, 100)))
		}
	}()
	fmt.Printf("\n%d Volumes of %s, one after another ...\n", b.cfg.createRound, createSize)
	vols := b.dyn.Resource(volumeGVR).Namespace(namespace)
	for i := range b.cfg.createRound {
		name := fmt.Sprintf("%s%d", createPrefix, i)
		began := time.Now()
		if err := b.createVolume(ctx, name, createSize); err != nil {
			return err
		}
		at, err := b.waitVolume(ctx, name, 2*time.Minute, available)
		if err != nil {
			return err
		}
		created = append(created, at.Sub(began))
		v, _ := b.getVolume(ctx, name)
		alloc := "?"
		if v != nil {
			alloc = fmt.Sprintf("%d KiB", v.Status.AllocatedBytes/1024)
		}
		began = time.Now()
		if err := vols.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete Volume %s: %w", name, err)
		}
		if at, err = b.waitVolume(ctx, name, 2*time.Minute, gone); err != nil {
			return err
		}
		deleted = append(deleted, at.Sub(began))
		fmt.Printf("  %s: Available after %s (allocated %s), gone %s after delete\n", name, ms(created[i]), alloc, ms(deleted[i]))
	}
	return nil
}

// attachRound is one hot-plug and unplug of the hot Volume, each timed
// from just before its patch.
type attachRound struct {
	load                      string
	attachStatus, attachGuest time.Duration
	detachStatus, detachGuest time.Duration
	target, device            string
}

// attachRounds adds the hot Volume to the running VM and removes it
// again, -attach-rounds times.
func (b *bench) attachRounds(ctx context.Context, con *console) error {
	// The guest's first disk list comes after guestio's line.
	if err := con.wait(ctx, time.Minute, func() bool { return len(con.lists) > 0 }); err != nil {
		return fmt.Errorf("the guest's disk list: %w", err)
	}
	if l, _ := con.lastList(); l.has(hotVolume) || !l.has(ioVolume) {
		return fmt.Errorf("the guest lists disks %v before the first hot-plug; want %s and not %s", l.disks, ioVolume, hotVolume)
	}
	var rounds []attachRound
	defer func() { printAttach(rounds) }()
	fmt.Printf("\nhot-plug: Volume %s (%d MiB) into VM %s and out again, %d rounds ...\n", hotVolume, hotMiB, vmName, b.cfg.attachRounds)
	for i := range b.cfg.attachRounds {
		// Between rounds: the Volume no longer attached anywhere, and a
		// moment for the guest's poll loop.
		if _, err := b.waitVolume(ctx, hotVolume, 2*time.Minute, func(v *storagev1alpha1.Volume) bool {
			return available(v) && len(v.Status.Attachments) == 0
		}); err != nil {
			return err
		}
		if err := benchenv.Sleep(ctx, time.Second); err != nil {
			return err
		}
		r := attachRound{load: benchenv.LoadAverage()}

		// Attach.
		began := time.Now()
		if err := b.patchVolumes(ctx, ioVolume, hotVolume); err != nil {
			return err
		}
		err := both(
			func() error {
				at, vs, err := b.waitVMVolumes(ctx, 2*time.Minute, func(vs []computev1alpha1.VirtualMachineVolumeStatus) bool {
					s := find(vs, hotVolume)
					return s != nil && s.Phase == computev1alpha1.VolumeAttached
				})
				if err == nil {
					r.attachStatus, r.target = at.Sub(began), find(vs, hotVolume).Target
				}
				return err
			},
			func() error {
				l, err := con.firstList(ctx, began, 2*time.Minute, func(l diskList) bool { return l.has(hotVolume) })
				if err == nil {
					r.attachGuest, r.device = l.at.Sub(began), l.device(hotVolume)
				}
				return err
			})
		if err != nil {
			return fmt.Errorf("round %d, attach: %w", i+1, err)
		}

		// Detach.
		began = time.Now()
		if err := b.patchVolumes(ctx, ioVolume); err != nil {
			return err
		}
		err = both(
			func() error {
				at, _, err := b.waitVMVolumes(ctx, 2*time.Minute, func(vs []computev1alpha1.VirtualMachineVolumeStatus) bool {
					return find(vs, hotVolume) == nil
				})
				if err == nil {
					r.detachStatus = at.Sub(began)
				}
				return err
			},
			func() error {
				l, err := con.firstList(ctx, began, 2*time.Minute, func(l diskList) bool {
					_, there := l.disks[r.device]
					return !there
				})
				if err == nil {
					r.detachGuest = l.at.Sub(began)
				}
				return err
			})
		if err != nil {
			return fmt.Errorf("round %d, detach: %w", i+1, err)
		}
		rounds = append(rounds, r)
		fmt.Printf("  round %d: attach -> status %s (%s), guest %s (%s); detach -> status %s, guest %s; load %s\n",
			i+1, ms(r.attachStatus), r.target, ms(r.attachGuest), r.device, ms(r.detachStatus), ms(r.detachGuest), r.load)
	}
	return nil
}

// both runs f and g at once and returns their errors.
func both(f, g func() error) error {
	var wg sync.WaitGroup
	var ef, eg error
	wg.Go(func() { ef = f() })
	wg.Go(func() { eg = g() })
	wg.Wait()
	return errors.Join(ef, eg)
}

func find(vs []computev1alpha1.VirtualMachineVolumeStatus, name string) *computev1alpha1.VirtualMachineVolumeStatus {
	for i := range vs {
		if vs[i].Volume == name {
			return &vs[i]
		}
	}
	return nil
}

// waitVMVolumes gets the VM every 50 ms until ok holds for its
// status.volumes and returns when this client saw it. A volume in phase
// Error ends the wait.
func (b *bench) waitVMVolumes(ctx context.Context, timeout time.Duration, ok func([]computev1alpha1.VirtualMachineVolumeStatus) bool) (time.Time, []computev1alpha1.VirtualMachineVolumeStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		vm, err := b.getVM(ctx)
		if err != nil {
			return time.Time{}, nil, err
		}
		if ok(vm.Status.Volumes) {
			return time.Now(), vm.Status.Volumes, nil
		}
		for _, v := range vm.Status.Volumes {
			if v.Phase == computev1alpha1.VolumeAttachError {
				return time.Time{}, nil, fmt.Errorf("VM %s: volume %s: phase Error: %s", vmName, v.Volume, v.Message)
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, nil, fmt.Errorf("VM %s's status.volumes %+v after %s", vmName, vm.Status.Volumes, timeout)
		}
		if err := benchenv.Sleep(ctx, poll); err != nil {
			return time.Time{}, nil, err
		}
	}
}

func printAttach(rounds []attachRound) {
	if len(rounds) == 0 {
		return
	}
	fmt.Printf("\nhot-plug latency, %d rounds (from just before the merge patch of spec.volumes; status: a Get every 50 ms; guest: its /sys/block poll every 0.1 s, at the kubelet's time of the console line):\n", len(rounds))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "  \tp50\tmax\t")
	row := func(name string, get func(attachRound) time.Duration) {
		var ds []time.Duration
		for _, r := range rounds {
			ds = append(ds, get(r))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", name, ms(benchenv.Percentile(ds, 50)), ms(benchenv.Percentile(ds, 100)))
	}
	row("attach -> status.volumes Attached", func(r attachRound) time.Duration { return r.attachStatus })
	row("attach -> the guest lists the disk", func(r attachRound) time.Duration { return r.attachGuest })
	row("detach -> status.volumes without it", func(r attachRound) time.Duration { return r.detachStatus })
	row("detach -> the guest's list without it", func(r attachRound) time.Duration { return r.detachGuest })
	tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
