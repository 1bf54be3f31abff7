package e2e

import (
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// vmConsoleAndPause boots a small VM, vmcon, in ns on the node and checks
// `strata console` (a command typed on the serial console is answered;
// Ctrl-] leaves) and `strata vm pause|unpause` (the guest stops and
// resumes: a ticker it runs stops and resumes on its console), then
// deletes it.
func vmConsoleAndPause(t *testing.T, s *testenv.Server, ns string) {
	uploadTestVMImage(t, s, ns, "vmcon")
	fl := "e2e-con-" + randomSuffix(t)
	t.Cleanup(func() { s.Kubectl("delete", "flavor", fl, "--ignore-not-found") })
	s.MustKubectlStdin(flavor(fl, `{vcpus: 1, ramMiB: 192, diskGiB: 1}`), "create", "-f", "-")
	s.MustKubectlStdin(vmManifest("vmcon", `{flavor: `+fl+`, image: vmcon}`), "create", "-n", ns, "-f", "-")
	t.Cleanup(func() { s.Kubectl("delete", "vm", "vmcon", "-n", ns, "--ignore-not-found", "--timeout=3m") })
	logs := func() string { return s.Kubectl("logs", "-n", ns, "vm-vmcon").Stdout }
	testenv.Eventually(t, 3*time.Minute, func() error {
		if phase := vmField(s, ns, "vmcon", "{.status.phase}"); phase != "Running" {
			return fmt.Errorf("VM phase %q", phase)
		}
		if l := logs(); !strings.Contains(l, testimage.Marker) {
			return fmt.Errorf("no boot marker on the console yet:\n%s", lastBytes(l, 1024))
		}
		return nil
	})

	// The console, driven through a pipe as a script would.
	began := time.Now()
	cmd := exec.Command(s.Bin(), "console", "vmcon", "-n", ns, "--data-dir", s.DataDir())
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ended := false
	defer func() {
		if !ended {
			cmd.Process.Kill()
			<-exited
		}
	}()
	// The shell may still be starting: type, and again every 3 s until it
	// answers ("$((6*7))" keeps the echoed command from matching).
	var typed time.Time
	testenv.Eventually(t, 60*time.Second, func() error {
		if strings.Contains(out.String(), "console-42") {
			return nil
		}
		if time.Since(typed) > 3*time.Second {
			io.WriteString(in, "echo console-$((6*7))\n")
			typed = time.Now()
		}
		return fmt.Errorf("no answer on the console; strata console printed:\n%s", lastBytes(out.String(), 2048))
	})
	// A ticker in the background shows later whether the guest runs.
	io.WriteString(in, "(while :; do echo vmcon''-tick; sleep 1; done) &\n")
	time.Sleep(time.Second)
	in.Write([]byte{0x1d}) // Ctrl-]
	select {
	case err := <-exited:
		ended = true
		if err != nil {
			t.Errorf("strata console after Ctrl-]: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("strata console did not end 30 s after Ctrl-]:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "Connected to vmcon's serial console; escape character is ^]") {
		t.Errorf("strata console printed no hint:\n%s", out.String())
	}
	t.Logf("console session (answer, then Ctrl-]) took %s", time.Since(began).Round(time.Millisecond))

	ticks := func() int { return strings.Count(logs(), "vmcon-tick") }
	// setState pauses or unpauses the VM and checks what strata vm
	// printed, what QEMU says and the launcher pod's annotation.
	setState := func(action, state, annotation string) {
		t.Helper()
		r := testenv.Run(t, s.Bin(), "vm", action, "vmcon", "-n", ns, "--data-dir", s.DataDir())
		if r.Err != nil {
			t.Fatalf("strata vm %s: %s", action, r)
		}
		if want := "virtualmachine.compute.strata.io/vmcon " + state; !strings.Contains(r.Stdout, want) {
			t.Errorf("strata vm %s printed %q, want %q", action, r.Stdout, want)
		}
		st := s.MustKubectl("exec", "-n", ns, "vm-vmcon", "-c", "compute", "--", "strata-launcher", "qmp", "query-status")
		if !strings.Contains(st, `"status":"`+state+`"`) {
			t.Errorf("after strata vm %s, query-status = %s", action, st)
		}
		got := s.MustKubectl("get", "pod", "vm-vmcon", "-n", ns, "-o", `jsonpath={.metadata.annotations.compute\.strata\.io/paused}`)
		if got != annotation {
			t.Errorf("after strata vm %s, the launcher pod's paused annotation is %q, want %q", action, got, annotation)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := ticks(); n < 2 {
			return fmt.Errorf("%d ticks from the guest's background loop", n)
		}
		return nil
	})

	setState("pause", "paused", "true")
	// A tick may have been on its way to the log: count from a second on.
	time.Sleep(time.Second)
	before := ticks()
	time.Sleep(4 * time.Second)
	if after := ticks(); after != before {
		t.Errorf("a paused guest printed %d ticks in 4 s", after-before)
	}
	setState("unpause", "running", "")
	testenv.Eventually(t, 30*time.Second, func() error {
		if n := ticks(); n <= before {
			return fmt.Errorf("no tick since unpause (%d before)", before)
		}
		return nil
	})

	// Neither works on a VM without a running launcher.
	if r := testenv.Run(t, s.Bin(), "console", "nosuchvm", "-n", ns, "--data-dir", s.DataDir()); r.Err == nil || !strings.Contains(r.Stderr, "not running") {
		t.Errorf("strata console of a missing VM: %s", r)
	}
	s.MustKubectl("delete", "vm", "vmcon", "-n", ns, "--timeout=3m")
}
