package launcher

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// TestConsoleInputFromPipe: with a pipe for stdin, as in a launcher pod
// (stdin: true, no TTY), what is written to the launcher's stdin reaches
// the guest's serial console, whose shell answers on stdout.
func TestConsoleInputFromPipe(t *testing.T) {
	requireVMTools(t)
	img, err := testimage.Build(t.TempDir(), testimage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	p := startLauncherWithStdin(t, Spec{Name: "console-vm", VCPUs: 1, MemoryMiB: 192, Kernel: img.Kernel, Initrd: img.Initrd, Append: img.Append}, r)
	r.Close()
	p.waitFor(t, testimage.Marker, 90*time.Second)
	// The shell may still be starting: type until it answers ("$((6*7))"
	// keeps the echoed command from matching).
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(p.output(), "\nconsole-42") {
		if time.Now().After(deadline) {
			t.Fatalf("the guest's shell did not answer on the console:\n%s", p.output())
		}
		io.WriteString(w, "echo console-$((6*7))\n")
		time.Sleep(time.Second)
	}
}
