package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// Environment variables the harness reads.
const (
	// BinEnv names the strata binary to test; default <repo>/bin/strata.
	BinEnv = "STRATA_BIN"
	// KubectlEnv names the kubectl to use; default DefaultKubectl.
	KubectlEnv = "KUBECTL"
	// DefaultKubectl is the machine's kubectl, deliberately not the bundled
	// one, so that tests see what an ordinary client sees.
	DefaultKubectl = "/usr/bin/kubectl"
)

const modulePath = "github.com/strata-cloud/strata"

// InCI reports whether the tests run in CI (CI=true or CI=1), where
// anything that would make a test skip is an error instead.
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && v
}

// skipOrFail skips the test outside CI and fails it in CI.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// CheckHost returns why this machine cannot run Strata servers, or nil.
func CheckHost() error {
	if runtime.GOOS != "linux" {
		return fmt.Errorf("strata servers run only on Linux, not %s", runtime.GOOS)
	}
	if os.Geteuid() != 0 {
		return errors.New("strata e2e tests must run as root")
	}
	return nil
}

// RequireHost skips (outside CI) or fails (in CI) t unless this machine can
// run Strata servers: Linux, as root.
func RequireHost(t testing.TB) {
	t.Helper()
	if err := CheckHost(); err != nil {
		skipOrFail(t, "%v", err)
	}
}

// RepoRoot finds the root of the Strata module by walking up from the
// working directory (go test runs in the package's directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && goModIs(data, modulePath) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("repo root: no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func goModIs(data []byte, module string) bool {
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return f[1] == module
		}
	}
	return false
}

// BinaryPath returns the strata binary under test: $STRATA_BIN, else
// <repo>/bin/strata. It fails if the file is not there.
func BinaryPath() (string, error) {
	path := os.Getenv(BinEnv)
	if path == "" {
		root, err := RepoRoot()
		if err != nil {
			return "", fmt.Errorf("%w; set %s", err, BinEnv)
		}
		path = filepath.Join(root, "bin", "strata")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("strata binary %s: %w", path, err)
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("strata binary %s is missing: run `make build` first (or set %s)", abs, BinEnv)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("strata binary %s is not an executable file: run `make build` first", abs)
	}
	return abs, nil
}

// Binary returns the strata binary under test, failing t if it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	bin, err := BinaryPath()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// KubectlCommand returns the command (program and leading arguments) that
// runs kubectl: $KUBECTL, else /usr/bin/kubectl. When that is missing, CI
// fails; elsewhere the bundled `strata kubectl` stands in.
func KubectlCommand() ([]string, error) {
	if path := os.Getenv(KubectlEnv); path != "" {
		resolved, err := exec.LookPath(path)
		if err != nil {
			return nil, fmt.Errorf("%s=%s: %w", KubectlEnv, path, err)
		}
		return []string{resolved}, nil
	}
	if _, err := os.Stat(DefaultKubectl); err == nil {
		return []string{DefaultKubectl}, nil
	}
	if InCI() {
		return nil, fmt.Errorf("kubectl is missing at %s: CI must install it (hack/install-deps.sh) or set %s", DefaultKubectl, KubectlEnv)
	}
	bin, err := BinaryPath()
	if err != nil {
		return nil, fmt.Errorf("kubectl is missing at %s and the bundled one is unavailable: %w", DefaultKubectl, err)
	}
	return []string{bin, "kubectl"}, nil
}
