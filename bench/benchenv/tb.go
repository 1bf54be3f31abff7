package benchenv

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// TB lets a bench program use internal/testenv's functions that take a
// testing.TB (the test fabric, multi-node servers and agents) outside `go
// test`. Logf prints, Errorf prints and marks it failed, Fatal, FailNow
// and Skip end the function that Do runs (with an error), Cleanup
// registers functions that Close runs last first, and TempDir makes
// directories below the bench's own. Any other testing.TB method panics:
// testenv does not use them.
type TB struct {
	testing.TB // nil: only satisfies the interface's unexported method

	name string
	dir  string

	mu       sync.Mutex
	failed   bool
	cleanups []func()
	dirs     int
}

// tbStop is what a Fatal panics with, for Do to recover.
type tbStop struct{ msg string }

// NewTB returns a TB named name whose temporary directories go below dir.
func NewTB(name, dir string) *TB { return &TB{name: name, dir: dir} }

// Do runs fn and returns the message of a Fatal, FailNow or Skip that
// ended it as an error (other panics go on).
func (t *TB) Do(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(tbStop)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("%s", s.msg)
		}
	}()
	fn()
	return nil
}

// Close runs the registered cleanups, the last registered first; a Fatal
// in one ends only that one.
func (t *TB) Close() {
	for {
		t.mu.Lock()
		n := len(t.cleanups)
		if n == 0 {
			t.mu.Unlock()
			return
		}
		fn := t.cleanups[n-1]
		t.cleanups = t.cleanups[:n-1]
		t.mu.Unlock()
		if err := t.Do(fn); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		}
	}
}

func (t *TB) Name() string { return t.name }
func (t *TB) Helper()      {}

func (t *TB) Log(args ...any)                 { fmt.Println(append([]any{" "}, args...)...) }
func (t *TB) Logf(format string, args ...any) { fmt.Printf("  "+format+"\n", args...) }

func (t *TB) Fail() {
	t.mu.Lock()
	t.failed = true
	t.mu.Unlock()
}

func (t *TB) Failed() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

func (t *TB) Error(args ...any) {
	t.Fail()
	fmt.Fprintln(os.Stderr, args...)
}

func (t *TB) Errorf(format string, args ...any) {
	t.Fail()
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func (t *TB) FailNow() {
	t.Fail()
	panic(tbStop{"failed"})
}

func (t *TB) Fatal(args ...any) {
	t.Fail()
	panic(tbStop{fmt.Sprint(args...)})
}

func (t *TB) Fatalf(format string, args ...any) {
	t.Fail()
	panic(tbStop{fmt.Sprintf(format, args...)})
}

// A bench cannot be skipped: Skip ends it like Fatal.
func (t *TB) Skip(args ...any)                 { t.Fatal(args...) }
func (t *TB) Skipf(format string, args ...any) { t.Fatalf(format, args...) }
func (t *TB) SkipNow()                         { t.FailNow() }
func (t *TB) Skipped() bool                    { return false }

func (t *TB) Cleanup(fn func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, fn)
	t.mu.Unlock()
}

// TempDir makes a new directory below the bench's (removed with it).
func (t *TB) TempDir() string {
	t.mu.Lock()
	t.dirs++
	n := t.dirs
	t.mu.Unlock()
	dir := fmt.Sprintf("%s/%03d", t.dir, n)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	return dir
}
