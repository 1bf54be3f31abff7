package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultCommandTimeout bounds one kubectl or strata invocation.
const DefaultCommandTimeout = 90 * time.Second

const historyLimit = 60

// Result is how a command ended.
type Result struct {
	Stdout, Stderr string
	// ExitCode is the process's exit code, -1 if it did not exit normally.
	ExitCode int
	// Err is nil after exit code 0.
	Err error
	// Duration is how long the command ran.
	Duration time.Duration
}

// String names the end of stderr on its first line, which is all that
// the filtered test log (make test-e2e) keeps of a failure.
func (r Result) String() string {
	last := strings.Join(strings.Fields(strings.ReplaceAll(tail(strings.TrimSpace(r.Stderr), 600), "\n", " | ")), " ")
	return fmt.Sprintf("exit %d (%v): %s\nstdout:\n%s\nstderr:\n%s", r.ExitCode, r.Err, last, r.Stdout, r.Stderr)
}

// Kubectl runs kubectl for one test against one kubeconfig, with a cache
// directory of its own so that no discovery result leaks between tests.
type Kubectl struct {
	t          testing.TB
	command    []string
	kubeconfig string
	cacheDir   string

	mu      sync.Mutex
	history []string
}

// NewKubectl returns a kubectl for t that uses the kubeconfig at path. If t
// fails, the commands it ran are logged.
func NewKubectl(t testing.TB, kubeconfig string) *Kubectl {
	t.Helper()
	command, err := KubectlCommand()
	if err != nil {
		t.Fatal(err)
	}
	k := &Kubectl{t: t, command: command, kubeconfig: kubeconfig, cacheDir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			k.mu.Lock()
			defer k.mu.Unlock()
			t.Logf("kubectl commands of this test (last %d):\n%s", historyLimit, strings.Join(k.history, "\n"))
		}
	})
	return k
}

// Args returns the full command line for kubectl args.
func (k *Kubectl) Args(args ...string) []string {
	full := append([]string{}, k.command...)
	full = append(full, "--kubeconfig", k.kubeconfig, "--cache-dir", k.cacheDir)
	return append(full, args...)
}

// Command returns an unstarted kubectl command bound to ctx, for callers
// that stream its output (watches).
func (k *Kubectl) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := k.Args(args...)
	k.record(full, nil)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = withoutEnv(os.Environ(), "KUBECONFIG")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs kubectl args. kubectl's stderr (e.g. its version-skew warning)
// is returned, not treated as failure.
func (k *Kubectl) Run(args ...string) Result {
	return k.RunStdin("", args...)
}

// RunStdin runs kubectl args with stdin as its standard input.
func (k *Kubectl) RunStdin(stdin string, args ...string) Result {
	k.t.Helper()
	full := k.Args(args...)
	env := withoutEnv(os.Environ(), "KUBECONFIG")
	began := time.Now()
	r := run(full, stdin, env, DefaultCommandTimeout)
	r.Duration = time.Since(began)
	k.record(full, &r)
	return r
}

// Must runs kubectl args and returns stdout, failing t unless kubectl
// exits with code 0.
func (k *Kubectl) Must(args ...string) string {
	k.t.Helper()
	return k.MustStdin("", args...)
}

// MustStdin is Must with stdin as kubectl's standard input.
func (k *Kubectl) MustStdin(stdin string, args ...string) string {
	k.t.Helper()
	r := k.RunStdin(stdin, args...)
	if r.Err != nil {
		k.t.Fatalf("kubectl %s: %s", strings.Join(args, " "), r)
	}
	return r.Stdout
}

func (k *Kubectl) record(full []string, r *Result) {
	line := "$ " + strings.Join(full, " ")
	if r != nil {
		line += fmt.Sprintf("  => exit %d in %s", r.ExitCode, r.Duration.Round(time.Millisecond))
		if r.Err != nil {
			line += ": " + strings.TrimSpace(tail(r.Stderr, 1024))
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.history = append(k.history, line)
	if len(k.history) > historyLimit {
		k.history = k.history[len(k.history)-historyLimit:]
	}
}

// Kubectl runs kubectl against s with s's test's cache directory.
func (s *Server) Kubectl(args ...string) Result {
	s.t.Helper()
	return s.kubectl.Run(args...)
}

// KubectlStdin runs kubectl against s with stdin as its standard input.
func (s *Server) KubectlStdin(stdin string, args ...string) Result {
	s.t.Helper()
	return s.kubectl.RunStdin(stdin, args...)
}

// MustKubectl runs kubectl against s and returns stdout, failing the test
// unless it exits with code 0.
func (s *Server) MustKubectl(args ...string) string {
	s.t.Helper()
	return s.kubectl.Must(args...)
}

// MustKubectlStdin is MustKubectl with stdin as kubectl's standard input.
func (s *Server) MustKubectlStdin(stdin string, args ...string) string {
	s.t.Helper()
	return s.kubectl.MustStdin(stdin, args...)
}

// KubectlClient is the kubectl that s's methods use.
func (s *Server) KubectlClient() *Kubectl { return s.kubectl }

// Run runs bin args to completion (bounded by DefaultCommandTimeout) and
// returns how it ended; a command that does not exit in time fails t. It is
// for commands expected to exit, such as `strata server` with bad input.
func Run(t testing.TB, bin string, args ...string) Result {
	t.Helper()
	return RunTimeout(t, DefaultCommandTimeout, bin, args...)
}

// RunTimeout is Run with an explicit timeout.
func RunTimeout(t testing.TB, timeout time.Duration, bin string, args ...string) Result {
	t.Helper()
	return RunEnv(t, timeout, nil, bin, args...)
}

// RunEnv is RunTimeout with extra environment variables ("NAME=value"),
// which override the test process's own; KUBECONFIG is never inherited.
func RunEnv(t testing.TB, timeout time.Duration, env []string, bin string, args ...string) Result {
	t.Helper()
	r := run(append([]string{bin}, args...), "", append(withoutEnv(os.Environ(), "KUBECONFIG"), env...), timeout)
	if errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("%s %s: did not exit within %s\n%s", bin, strings.Join(args, " "), timeout, r)
	}
	return r
}

func run(full []string, stdin string, env []string, timeout time.Duration) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String(), ExitCode: -1, Err: err}
	if cmd.ProcessState != nil {
		r.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return r
}
