package agent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestEnsureCgroupRootV1(t *testing.T) {
	fs := t.TempDir()
	for _, h := range []string{"cpuset", "memory"} {
		if err := os.MkdirAll(filepath.Join(fs, h), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("memory", filepath.Join(fs, "mem-link")); err != nil {
		t.Fatal(err)
	}
	write := func(path, data string) {
		if err := os.WriteFile(filepath.Join(fs, path), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("cpuset/cpuset.cpus", "0-1\n")
	write("cpuset/cpuset.mems", "0\n")
	// A real cpuset cgroup appears with empty files; emulate the kernel.
	for _, d := range []string{"cpuset/strata", "cpuset/strata/node-a"} {
		if err := os.MkdirAll(filepath.Join(fs, d), 0o755); err != nil {
			t.Fatal(err)
		}
		write(d+"/cpuset.cpus", "")
		write(d+"/cpuset.mems", "")
	}
	if err := ensureCgroupRoot(fs, "/strata/node-a/"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fs, "memory", "strata", "node-a")); err != nil {
		t.Errorf("memory hierarchy: %v", err)
	}
	for _, f := range []string{"strata/cpuset.cpus", "strata/node-a/cpuset.cpus"} {
		if got, _ := os.ReadFile(filepath.Join(fs, "cpuset", f)); string(got) != "0-1\n" {
			t.Errorf("%s = %q, want the parent's 0-1", f, got)
		}
	}
	if err := ensureCgroupRoot(fs, "/"); err != nil {
		t.Errorf("root cgroup: %v", err)
	}
}

func TestEnsureCgroupRootV2(t *testing.T) {
	fs := t.TempDir()
	if err := os.WriteFile(filepath.Join(fs, "cgroup.controllers"), []byte("cpu memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ensureCgroupRoot(fs, "strata-n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(fs, "strata-n1")); err != nil {
		t.Error(err)
	}
}
