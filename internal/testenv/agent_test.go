package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseMountsUnder(t *testing.T) {
	mountinfo := `22 1 253:0 / / rw,relatime - ext4 /dev/vda rw
30 22 0:25 / /tmp/d rw - tmpfs tmpfs rw
31 30 0:26 / /tmp/d/agent/kubelet/pods/x/volumes/a rw - tmpfs tmpfs rw
32 30 0:27 / /tmp/d/agent/containerd/state/k8s.io/id/rootfs rw - overlay overlay rw
33 30 0:28 / /tmp/d/with\040space rw - tmpfs tmpfs rw
34 22 0:29 / /tmp/dd/other rw - tmpfs tmpfs rw
35 22 0:30 / /tmp/d2 rw - tmpfs tmpfs rw
`
	got, err := parseMountsUnder(strings.NewReader(mountinfo), "/tmp/d")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/tmp/d/agent/containerd/state/k8s.io/id/rootfs",
		"/tmp/d/agent/kubelet/pods/x/volumes/a",
		"/tmp/d/with space",
		"/tmp/d",
	}
	if !slices.Equal(got, want) {
		t.Errorf("parseMountsUnder = %q, want %q", got, want)
	}
}

func TestUnescapeMountPath(t *testing.T) {
	for in, want := range map[string]string{
		`/a/b`:           "/a/b",
		`/a\040b`:        "/a b",
		`/tab\011x\134y`: "/tab\tx\\y",
		`/short\04`:      `/short\04`,
	} {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("unescapeMountPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadyNode(t *testing.T) {
	since := time.Date(2026, 1, 1, 10, 0, 0, 500e6, time.UTC)
	nodes := func(status, heartbeat string) Result {
		return Result{Stdout: `{"items":[{"metadata":{"name":"n1"},"status":{"conditions":[
			{"type":"MemoryPressure","status":"False","lastHeartbeatTime":"2026-01-01T10:00:05Z"},
			{"type":"Ready","status":"` + status + `","reason":"KubeletReady","lastHeartbeatTime":"` + heartbeat + `"}]}}]}`}
	}
	for _, tc := range []struct {
		name    string
		r       Result
		wantErr string
	}{
		{"ready, fresh", nodes("True", "2026-01-01T10:00:05Z"), ""},
		{"ready, same second", nodes("True", "2026-01-01T10:00:00Z"), ""},
		{"ready, stale", nodes("True", "2026-01-01T09:59:59Z"), "no node Ready since"},
		{"not ready", nodes("False", "2026-01-01T10:00:05Z"), "Ready=False"},
		{"no nodes", Result{Stdout: `{"items":[]}`}, "no node registered"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name, err := readyNode(tc.r, since)
			if tc.wantErr == "" {
				if err != nil || name != "n1" {
					t.Fatalf("readyNode = %q, %v; want n1", name, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("readyNode err = %v, want one with %q", err, tc.wantErr)
			}
		})
	}
}

func TestProcessMentions(t *testing.T) {
	// This test process's command line names its own binary's directory.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(exe)
	if !processMentions(os.Getpid(), dir) {
		t.Errorf("processMentions(self, %s) = false", dir)
	}
	if processMentions(os.Getpid(), dir+"-not") {
		t.Errorf("processMentions(self, %s-not) = true", dir)
	}
	if pids := leftoverProcesses(t.TempDir()); len(pids) != 0 {
		t.Errorf("leftoverProcesses(fresh dir) = %v", pids)
	}
}

func TestReapDataDirRefusesRoot(t *testing.T) {
	if err := reapDataDir("/", t.Logf); err == nil {
		t.Error("reapDataDir(/) succeeded")
	}
}

func TestRuncInits(t *testing.T) {
	dir := t.TempDir()
	self := os.Getpid()
	start, ok := processStart(self)
	if !ok {
		t.Fatal("no start time for this process")
	}
	write := func(rel string, pid int, start uint64) {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf(`{"id":"x","init_process_pid":%d,"init_process_start":%d}`, pid, start)
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("agent/containerd/runc/k8s.io/alive/state.json", self, start)
	write("containerd/runc/k8s.io/joined/state.json", self, start)
	write("agent/containerd/runc/k8s.io/reused/state.json", self, start+1) // a PID reused since
	write("agent/containerd/runc/k8s.io/gone/state.json", 0, 0)
	if got := runcInits(dir); !slices.Equal(got, []int{self, self}) {
		t.Errorf("runcInits = %v, want [%d %d]", got, self, self)
	}
}
