package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/remotecommand"

	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
)

// consoleEscape is the byte that ends `strata console`: Ctrl-], as in
// telnet and virsh console.
const consoleEscape = 0x1d

func newConsoleCmd() *cobra.Command {
	var target vmTarget
	cmd := &cobra.Command{
		Use:   "console VM",
		Short: "Connect to a running VM's serial console (Ctrl-] leaves)",
		Long: `Connect to a running VM's serial console over the Kubernetes API: what
the guest prints appears as it comes, and what you type goes to the guest.
On a terminal, the terminal is put in raw mode, so keys like Ctrl-C reach
the guest; Ctrl-] (or the end of standard input) leaves. Output from before
you connected is in kubectl logs vm-VM.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConsole(cmd.Context(), &target, args[0], os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	target.addFlags(cmd)
	return cmd
}

// runConsole attaches stdin and stdout to the VM's serial console (the
// launcher container's stdin and stdout) until the escape character, the
// end of stdin, or the VM's end.
func runConsole(ctx context.Context, target *vmTarget, name string, stdin io.Reader, stdout, stderr io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	l, err := target.runningLauncher(ctx, name)
	if err != nil {
		return err
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("terminal raw mode: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	// Raw mode: line ends need their carriage return.
	fmt.Fprintf(stderr, "Connected to %s's serial console; escape character is ^]\r\n", name)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := newEscapeReader(stdin)
	go func() {
		// After the escape the attach ends by itself once what came
		// before it is sent (the container's stdin stays open: the
		// kubelet only detaches us); if not, cut it.
		select {
		case <-in.escaped:
		case <-ctx.Done():
			return
		}
		select {
		case <-time.After(2 * time.Second):
			cancel()
		case <-ctx.Done():
		}
	}()
	err = l.stream(ctx, "attach", &corev1.PodAttachOptions{
		Container: virtualmachine.LauncherContainer,
		Stdin:     true,
		Stdout:    true,
	}, remotecommand.StreamOptions{Stdin: in, Stdout: stdout})
	select {
	case <-in.escaped:
		err = nil
	default:
	}
	fmt.Fprintf(stderr, "\r\nDisconnected from %s's serial console\r\n", name)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("console of %s: %w", name, err)
	}
	return nil
}

// escapeReader passes its reader through up to the escape character, and
// then ends (io.EOF), closing escaped.
type escapeReader struct {
	r       io.Reader
	escaped chan struct{}
	once    sync.Once
	mu      sync.Mutex
	done    bool
}

func newEscapeReader(r io.Reader) *escapeReader {
	return &escapeReader{r: r, escaped: make(chan struct{})}
}

func (e *escapeReader) Read(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return 0, io.EOF
	}
	n, err := e.r.Read(p)
	if i := bytes.IndexByte(p[:n], consoleEscape); i >= 0 {
		e.done = true
		e.once.Do(func() { close(e.escaped) })
		if i == 0 {
			return 0, io.EOF
		}
		return i, nil
	}
	return n, err
}
