package objectstore

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// endlessReader feeds bytes forever, creating the file started after the
// first MiB so the parent knows the upload is under way.
type endlessReader struct {
	n       int
	started string
}

func (e *endlessReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'z'
	}
	e.n += len(p)
	if e.n >= 1<<20 && e.started != "" {
		os.WriteFile(e.started, nil, 0o644)
		e.started = ""
		time.Sleep(10 * time.Millisecond)
	}
	return len(p), nil
}

// TestKill9MidUpload runs an upload in a child process, kills it with
// SIGKILL mid-stream, and reopens the store: the committed object is
// intact, the interrupted one does not exist, and no file is left over.
func TestKill9MidUpload(t *testing.T) {
	if dir := os.Getenv("OBJECTSTORE_KILL_CHILD"); dir != "" {
		ctx := context.Background()
		s, err := Open(dir)
		if err != nil {
			os.Exit(2)
		}
		s.CreateContainer(ctx, acct, "c", nil)
		if _, err := s.Put(ctx, acct, "c", "committed", strings.NewReader("safe"), PutOptions{Size: -1}); err != nil {
			os.Exit(3)
		}
		s.Put(ctx, acct, "c", "interrupted", &endlessReader{started: filepath.Join(dir, "started")}, PutOptions{Size: -1})
		os.Exit(4) // never reached: killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9MidUpload$")
	cmd.Env = append(os.Environ(), "OBJECTSTORE_KILL_CHILD="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("child never started its upload")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()
	if n := len(dataFiles(t, dir)); n != 2 {
		t.Logf("before reopen: %d files (the committed one and the partial temp file)", n)
	}
	s := open(t, dir)
	defer s.Close()
	if got := read(t, s, "c", "committed"); got != "safe" {
		t.Errorf("committed = %q", got)
	}
	if _, err := s.Stat(context.Background(), acct, "c", "interrupted"); !errors.Is(err, ErrNoObject) {
		t.Errorf("interrupted object: %v", err)
	}
	if files := dataFiles(t, dir); len(files) != 1 {
		t.Errorf("files after reopen: %v", files)
	}
	c, _ := s.Container(context.Background(), acct, "c")
	if c.Objects != 1 || c.Bytes != 4 {
		t.Errorf("container usage %+v", c)
	}
}
