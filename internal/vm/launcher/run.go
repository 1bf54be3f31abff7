package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/strata-cloud/strata/internal/vm/cloudinit"
	"github.com/strata-cloud/strata/internal/vm/dhcp"
	"github.com/strata-cloud/strata/internal/vm/qmp"
)

// Exit codes of the launcher: how the VM ended.
const (
	// ExitOK: the guest powered off, by itself or when asked to.
	ExitOK = 0
	// ExitLauncherError: the launcher could not run the VM (bad spec,
	// missing files, QEMU would not start or answer QMP).
	ExitLauncherError = 1
	// ExitQEMUFailed: QEMU exited with an error or was killed.
	ExitQEMUFailed = 2
	// ExitForced: asked to stop, the guest did not power off within the
	// grace period and QEMU was made to quit.
	ExitForced = 3
)

// Defaults.
const (
	DefaultGracePeriod = 30 * time.Second
	DefaultRunDir      = "/run/strata-launcher"
	DefaultKVMDevice   = "/dev/kvm"
)

// Config is one launcher run.
type Config struct {
	Spec Spec
	// QEMU and QEMUImg are the executables; empty means found on PATH.
	QEMU, QEMUImg string
	// RunDir holds the QMP socket, the status file and a generated
	// cloud-init seed.
	RunDir string
	// KVMDevice is tried for KVM (default /dev/kvm).
	KVMDevice string
	// Accel is "auto" (default), "kvm" or "tcg".
	Accel string
	// GracePeriod is how long the guest has to power off after the ACPI
	// power button before QEMU is made to quit (default 30 s). The pod's
	// terminationGracePeriodSeconds must be longer.
	GracePeriod time.Duration
	// Stdout receives the guest's serial console and the launcher's log
	// lines; Stderr QEMU's own messages. When Stdout is not an *os.File,
	// QEMU's output is copied into it concurrently with the launcher's
	// lines, so it must take concurrent writes.
	Stdout, Stderr io.Writer
	// Stdin, when set, is the guest's serial console input (the pod's
	// stdin: `strata console` attaches to it).
	Stdin io.Reader
	// Shutdown asks for a graceful stop each time it delivers: the first
	// presses the power button, a second makes QEMU quit at once.
	Shutdown <-chan struct{}
	// Incoming makes this launcher the target of a live migration (see
	// migrate.go) instead of booting the guest.
	Incoming bool
}

// Result is how a run ended.
type Result struct {
	ExitCode int
	Reason   string
}

// Phases in the status file.
const (
	PhaseStarting     = "Starting"
	PhaseRunning      = "Running"
	PhaseShuttingDown = "ShuttingDown"
	PhaseStopped      = "Stopped"
	PhaseFailed       = "Failed"
)

// Status is the launcher's status file (RunDir/status.json), rewritten
// whole at each change.
type Status struct {
	Name        string    `json:"name"`
	Phase       string    `json:"phase"`
	Accel       string    `json:"accel,omitempty"`
	AccelReason string    `json:"accelReason,omitempty"`
	QEMUVersion string    `json:"qemuVersion,omitempty"`
	QEMUPID     int       `json:"qemuPID,omitempty"`
	QMPSocket   string    `json:"qmpSocket,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	ExitCode    *int      `json:"exitCode,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}

// StatusFile is the status file's name in the run directory.
const StatusFile = "status.json"

// The QMP sockets' names in the run directory: the launcher's own, and
// one for tools and tests (see Invocation.AdminQMPSocket).
const (
	QMPSocketName      = "qmp.sock"
	AdminQMPSocketName = "qmp-admin.sock"
)

func (c *Config) defaults() {
	if c.QEMU == "" {
		c.QEMU = "qemu-system-x86_64"
	}
	if c.QEMUImg == "" {
		c.QEMUImg = "qemu-img"
	}
	if c.RunDir == "" {
		c.RunDir = DefaultRunDir
	}
	if c.KVMDevice == "" {
		c.KVMDevice = DefaultKVMDevice
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = DefaultGracePeriod
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
}

// runner is one Run's state.
type runner struct {
	cfg    Config
	logMu  sync.Mutex
	status Status
}

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.cfg.Stdout, "strata-launcher: "+format+"\n", args...)
}

// setStatus changes the status and rewrites the file.
func (r *runner) setStatus(change func(*Status)) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	change(&r.status)
	b, _ := json.MarshalIndent(r.status, "", "  ")
	path := filepath.Join(r.cfg.RunDir, StatusFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err == nil {
		os.Rename(tmp, path)
	}
}

// Run runs the VM until it ends and says how. Cancelling ctx kills QEMU
// at once; Config.Shutdown stops it gracefully. The returned error
// explains a non-zero exit code.
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg.defaults()
	r := &runner{cfg: cfg, status: Status{Name: cfg.Spec.Name, Phase: PhaseStarting}}
	res, err := r.run(ctx)
	code := res.ExitCode
	r.setStatus(func(s *Status) {
		s.Phase = PhaseStopped
		if code != ExitOK {
			s.Phase = PhaseFailed
		}
		s.ExitCode = &code
		s.Reason = res.Reason
	})
	r.logf("VM %s ended: %s (exit code %d)", cfg.Spec.Name, res.Reason, code)
	return res, err
}

func fail(code int, err error) (Result, error) {
	return Result{ExitCode: code, Reason: err.Error()}, err
}

func (r *runner) run(ctx context.Context) (Result, error) {
	cfg := r.cfg
	spec := cfg.Spec
	if err := spec.Validate(); err != nil {
		return fail(ExitLauncherError, fmt.Errorf("spec: %w", err))
	}
	if err := os.MkdirAll(cfg.RunDir, 0o755); err != nil {
		return fail(ExitLauncherError, err)
	}
	accel, err := ChooseAccel(cfg.Accel, func() Accel { return DetectAccel(cfg.KVMDevice) })
	r.setStatus(func(s *Status) { s.Accel, s.AccelReason = accel.Name, accel.Reason })
	if err != nil {
		return fail(ExitLauncherError, err)
	}
	r.logf("VM %s: accelerator %s (%s)", spec.Name, accel.Name, accel.Reason)

	inv := Invocation{
		Accel:          accel.Name,
		QMPSocket:      filepath.Join(cfg.RunDir, QMPSocketName),
		AdminQMPSocket: filepath.Join(cfg.RunDir, AdminQMPSocketName),
		CloudInitISO:   spec.CloudInitISO,
		Incoming:       cfg.Incoming,
	}
	if inv.DiskFormats, err = r.prepareDisks(ctx); err != nil {
		return fail(ExitLauncherError, err)
	}
	for i, n := range spec.NICs {
		if n.PodInterface == "" {
			continue
		}
		var mac net.HardwareAddr
		if n.MAC != "" {
			mac, _ = net.ParseMAC(n.MAC) // validated
		}
		lease, br, err := bindPodInterface(cfg.RunDir, n.PodInterface, n.Tap, mac)
		if err != nil {
			return fail(ExitLauncherError, fmt.Errorf("nic %d: %w", i, err))
		}
		lease.Hostname = spec.Name
		if n.Address != "" { // validated
			lease.Addr = netip.MustParsePrefix(n.Address)
			lease.Gateway = netip.Addr{}
			if n.Gateway != "" {
				lease.Gateway = netip.MustParseAddr(n.Gateway)
			}
		}
		spec.NICs[i].MAC = lease.MAC.String()
		lease = r.startMetadata(ctx, br, n.PodInterface, lease)
		r.logf("nic %d: %s bridged with the pod's %s; the guest (MAC %s) gets %s by DHCP, gateway %s", i, n.Tap, n.PodInterface, lease.MAC, lease.Addr, lease.Gateway)
		go func() {
			if err := dhcp.Serve(ctx, br, DHCPServerAddr, lease, r.logf); err != nil {
				r.logf("%v", err)
			}
		}()
	}
	if spec.CloudInit != nil {
		inv.CloudInitISO = filepath.Join(cfg.RunDir, "cidata.iso")
		if err := cloudinit.WriteISO(inv.CloudInitISO, spec.CloudInit.Seed()); err != nil {
			return fail(ExitLauncherError, err)
		}
	}
	for _, sock := range []string{inv.QMPSocket, inv.AdminQMPSocket} {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail(ExitLauncherError, err)
		}
	}

	args := QEMUArgs(spec, inv)
	cmd := exec.Command(cfg.QEMU, args...)
	cmd.Stdout = cfg.Stdout
	cmd.Stderr = cfg.Stderr
	cmd.Stdin = cfg.Stdin
	// Its own process group: a ^C on the launcher's terminal is the
	// launcher's to turn into a graceful shutdown, not QEMU's to die of.
	// Pdeathsig: QEMU never outlives a launcher that was killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fail(ExitLauncherError, fmt.Errorf("start QEMU: %w", err))
	}
	r.logf("QEMU started (pid %d): %s %s", cmd.Process.Pid, cfg.QEMU, shellQuote(args))
	r.setStatus(func(s *Status) { s.QEMUPID, s.QMPSocket, s.StartedAt = cmd.Process.Pid, inv.QMPSocket, start.UTC() })

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// From here QEMU runs: every path out waits for it to be gone.
	var qemuErr error
	qemuDone := false
	waitQEMU := func(d time.Duration) bool {
		if qemuDone {
			return true
		}
		select {
		case qemuErr = <-exited:
			qemuDone = true
		case <-time.After(d):
		}
		return qemuDone
	}
	kill := func() {
		if !waitQEMU(0) {
			cmd.Process.Kill()
			waitQEMU(time.Minute)
		}
	}

	mon, err := r.connectQMP(ctx, inv.QMPSocket, exited, &qemuErr, &qemuDone)
	if err != nil {
		kill()
		if qemuDone {
			return fail(ExitQEMUFailed, fmt.Errorf("QEMU exited before QMP answered: %v", exitDescription(qemuErr)))
		}
		return fail(ExitLauncherError, err)
	}
	v := mon.Version()
	r.setStatus(func(s *Status) { s.QEMUVersion = fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro) })

	shutdownReason := make(chan qmp.ShutdownEvent, 1)
	var events sync.WaitGroup
	events.Go(func() { r.watchEvents(mon, shutdownReason) })
	defer events.Wait()
	defer mon.Close()

	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, err := mon.QueryStatus(qctx)
	cancel()
	if err != nil {
		kill()
		return fail(ExitLauncherError, fmt.Errorf("query-status: %w", err))
	}
	r.logf("VM %s is %s (QEMU %d.%d.%d, %s)", spec.Name, st.Status, v.Major, v.Minor, v.Micro, accel.Name)
	if cfg.Incoming {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := r.prepareIncoming(qctx, mon)
		cancel()
		if err != nil {
			kill()
			return fail(ExitLauncherError, err)
		}
	} else {
		r.setStatus(func(s *Status) { s.Phase = PhaseRunning })
	}

	forced := false
	stopping := false
	migratedAway := false
	var graceTimer <-chan time.Time
	for !qemuDone {
		select {
		case qemuErr = <-exited:
			qemuDone = true
		case <-ctx.Done():
			kill()
			return fail(ExitLauncherError, fmt.Errorf("launcher cancelled: %w", ctx.Err()))
		case _, ok := <-cfg.Shutdown:
			if !ok {
				cfg.Shutdown = nil // a closed channel asks once
			}
			if !stopping && r.migratedAway(ctx, mon) {
				// The guest runs elsewhere now: nothing here to power off.
				r.logf("the guest migrated away: quitting QEMU and removing this node's copy of its disks")
				r.quit(ctx, mon, waitQEMU, kill)
				r.removeDisks()
				migratedAway = true
				continue
			}
			if !stopping {
				stopping = true
				r.logf("stopping VM %s: pressing the ACPI power button; QEMU quits in %s unless the guest powers off", spec.Name, cfg.GracePeriod)
				r.setStatus(func(s *Status) { s.Phase = PhaseShuttingDown })
				qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				if err := mon.SystemPowerdown(qctx); err != nil {
					r.logf("system_powerdown: %v", err)
				}
				cancel()
				graceTimer = time.After(cfg.GracePeriod)
				continue
			}
			r.logf("asked again to stop: quitting QEMU now")
			forced = true
			r.quit(ctx, mon, waitQEMU, kill)
		case <-graceTimer:
			r.logf("the guest did not power off within %s: quitting QEMU", cfg.GracePeriod)
			forced = true
			r.quit(ctx, mon, waitQEMU, kill)
		}
	}

	// QEMU sent its last events before exiting: read them to the end.
	select {
	case <-mon.Done():
	case <-time.After(2 * time.Second):
	}
	mon.Close()
	events.Wait()
	var sd *qmp.ShutdownEvent
	select {
	case e := <-shutdownReason:
		sd = &e
	default:
	}
	switch {
	case migratedAway:
		return Result{ExitCode: ExitOK, Reason: "the guest migrated to another node"}, nil
	case forced:
		return Result{ExitCode: ExitForced, Reason: "guest did not power off in time; QEMU " + exitDescription(qemuErr)}, errors.New("guest did not power off in time")
	case qemuErr != nil:
		return fail(ExitQEMUFailed, fmt.Errorf("QEMU %s", exitDescription(qemuErr)))
	case sd != nil && sd.Guest:
		return Result{ExitCode: ExitOK, Reason: "guest powered off (" + sd.Reason + ")"}, nil
	case sd != nil:
		return fail(ExitQEMUFailed, fmt.Errorf("QEMU shut the VM down: %s", sd.Reason))
	}
	return Result{ExitCode: ExitOK, Reason: "QEMU exited"}, nil
}

// phase is the status file's current phase.
func (r *runner) phase() string {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	return r.status.Phase
}

// migratedAway reports whether QEMU handed the guest to a migration target
// (its run state is postmigrate).
func (r *runner) migratedAway(ctx context.Context, mon *qmp.Client) bool {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := mon.QueryStatus(qctx)
	return err == nil && st.Status == "postmigrate"
}

// quit asks QEMU to quit and kills it if it has not exited 10 s later.
func (r *runner) quit(ctx context.Context, mon *qmp.Client, waitQEMU func(time.Duration) bool, kill func()) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := mon.Quit(qctx); err != nil {
		r.logf("quit: %v", err)
	}
	cancel()
	if !waitQEMU(10 * time.Second) {
		r.logf("QEMU did not quit: killing it")
		kill()
	}
}

// connectQMP dials QEMU's socket until it answers, QEMU exits or 30 s
// pass (QEMU creates the socket early, but a loaded host may be slow).
func (r *runner) connectQMP(ctx context.Context, sock string, exited <-chan error, qemuErr *error, qemuDone *bool) (*qmp.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		mon, err := qmp.Dial(dctx, sock)
		cancel()
		if err == nil {
			return mon, nil
		}
		last = err
		select {
		case *qemuErr = <-exited:
			*qemuDone = true
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("QMP did not answer in 30 s: %w", last)
}

// watchEvents logs QEMU's events and passes on the first SHUTDOWN.
func (r *runner) watchEvents(mon *qmp.Client, shutdown chan<- qmp.ShutdownEvent) {
	for ev := range mon.Events() {
		switch ev.Name {
		case "SHUTDOWN":
			var sd qmp.ShutdownEvent
			json.Unmarshal(ev.Data, &sd)
			r.logf("QEMU event SHUTDOWN (guest=%t, reason %s)", sd.Guest, sd.Reason)
			select {
			case shutdown <- sd:
			default:
			}
		case "MIGRATION":
			if r.migrationEvent(ev.Data) && r.cfg.Incoming && r.phase() == PhaseIncoming {
				go func() { // not on the event loop: it waits for replies
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					r.finishIncoming(ctx, mon)
				}()
			}
		case "RESUME":
			r.logf("QEMU event %s %s", ev.Name, ev.Data)
			if r.cfg.Incoming && r.phase() == PhaseIncoming {
				r.logf("the migrated guest runs here now")
				r.setStatus(func(s *Status) { s.Phase = PhaseRunning })
			}
		case "POWERDOWN", "RESET", "STOP", "GUEST_PANICKED", "WATCHDOG":
			r.logf("QEMU event %s %s", ev.Name, ev.Data)
		}
	}
}

// prepareDisks creates missing overlays and returns every disk's format.
func (r *runner) prepareDisks(ctx context.Context) ([]string, error) {
	var formats []string
	for i, d := range r.cfg.Spec.Disks {
		_, err := os.Stat(d.Path)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrNotExist) && d.BackingFile != "":
			if err := r.createOverlay(ctx, d); err != nil {
				return nil, fmt.Errorf("disk %d: %w", i, err)
			}
		default:
			return nil, fmt.Errorf("disk %d: %w", i, err)
		}
		f := d.Format
		if f == "" {
			if f, err = DetectFormat(d.Path); err != nil {
				return nil, fmt.Errorf("disk %d: %w", i, err)
			}
		}
		formats = append(formats, f)
	}
	return formats, nil
}

func (r *runner) createOverlay(ctx context.Context, d Disk) error {
	base, err := filepath.Abs(d.BackingFile)
	if err != nil {
		return err
	}
	bf := d.BackingFormat
	if bf == "" {
		if bf, err = DetectFormat(base); err != nil {
			return fmt.Errorf("backing file: %w", err)
		}
	}
	args := OverlayArgs(d.Path, base, bf, d.SizeBytes)
	out, err := exec.CommandContext(ctx, r.cfg.QEMUImg, args...).CombinedOutput()
	if err != nil {
		os.Remove(d.Path)
		return fmt.Errorf("qemu-img %s: %w: %s", shellQuote(args), err, out)
	}
	r.logf("created overlay %s on %s (%s)", d.Path, base, bf)
	return nil
}

// OverlayArgs are qemu-img's arguments to create path as a qcow2 overlay
// on base (of format baseFormat); size 0 keeps the base's size.
func OverlayArgs(path, base, baseFormat string, size int64) []string {
	args := []string{"create", "-q", "-f", FormatQCOW2, "-F", baseFormat, "-b", base, path}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	return args
}

// exitDescription describes cmd.Wait's error.
func exitDescription(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "was killed (signal: " + ws.Signal().String() + ")"
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	if err == nil {
		return "exited"
	}
	return err.Error()
}

// shellQuote renders args for a log line.
func shellQuote(args []string) string {
	out := make([]byte, 0, 256)
	for i, a := range args {
		if i > 0 {
			out = append(out, ' ')
		}
		if a != "" && !needsQuote(a) {
			out = append(out, a...)
			continue
		}
		out = strconv.AppendQuote(out, a)
	}
	return string(out)
}

func needsQuote(s string) bool {
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '_', c == '.', c == '/', c == '=', c == ',', c == ':', c == '+', c == '@':
		default:
			return true
		}
	}
	return false
}
