package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// QMPCommand is the launcher's subcommand that runs one QMP command on a
// running VM's admin socket, for tools that reach the launcher container
// by exec (`strata vm pause` runs `strata-launcher qmp stop`).
const QMPCommand = "qmp"

// QMPMain is `strata-launcher qmp [--run-dir D] [--timeout T] COMMAND
// [ARGUMENTS]`: it runs COMMAND (arguments a JSON object) on the admin QMP
// socket in the run directory and prints its return value as JSON on one
// line. When the command changes the run state (stop, cont) it then prints
// the state as `status: S` from query-status, so the caller sees the
// effect. Exit codes: 0 done, 1 QEMU refused or could not be reached, 2
// bad usage.
func QMPMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata-launcher qmp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runDir := fs.String("run-dir", DefaultRunDir, "the launcher's run directory (its admin QMP socket)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for QEMU")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: strata-launcher qmp [--run-dir D] [--timeout T] COMMAND [ARGUMENTS-JSON]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		fs.Usage()
		return 2
	}
	var cmdArgs any
	if fs.NArg() == 2 {
		var m map[string]any
		if err := json.Unmarshal([]byte(fs.Arg(1)), &m); err != nil {
			fmt.Fprintf(stderr, "strata-launcher qmp: arguments %q: want a JSON object: %v\n", fs.Arg(1), err)
			return 2
		}
		cmdArgs = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := runQMP(ctx, filepath.Join(*runDir, AdminQMPSocketName), fs.Arg(0), cmdArgs, stdout); err != nil {
		fmt.Fprintln(stderr, "strata-launcher qmp:", err)
		return 1
	}
	return 0
}

// runStateCommands change the guest's run state: after them runQMP also
// reports query-status.
var runStateCommands = map[string]bool{"stop": true, "cont": true}

func runQMP(ctx context.Context, sock, command string, args any, out io.Writer) error {
	mon, err := qmp.Dial(ctx, sock)
	if err != nil {
		return fmt.Errorf("%w (is the VM running in this container?)", err)
	}
	defer mon.Close()
	var ret json.RawMessage
	if err := mon.Execute(ctx, command, args, &ret); err != nil {
		return err
	}
	if len(ret) == 0 {
		ret = json.RawMessage("{}")
	}
	var line bytes.Buffer
	if err := json.Compact(&line, ret); err != nil {
		return errors.New("QEMU's reply is not JSON")
	}
	fmt.Fprintln(out, line.String())
	if runStateCommands[command] {
		st, err := mon.QueryStatus(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, "status:", st.Status)
	}
	return nil
}
