package launcher

import (
	"bufio"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeAdminQMP serves QMP on dir's admin socket for one client: a VM
// that runs until stopped, and records the commands it got.
func fakeAdminQMP(t *testing.T, dir string) (sent func() []string) {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, AdminQMPSocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var (
		mu  sync.Mutex
		got []string
	)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		enc := json.NewEncoder(conn)
		enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{"qemu": map[string]int{"major": 7, "minor": 2}}, "capabilities": []string{}}})
		running := true
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var cmd struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        any             `json:"id"`
			}
			json.Unmarshal(sc.Bytes(), &cmd)
			mu.Lock()
			got = append(got, strings.TrimSpace(cmd.Execute+" "+string(cmd.Arguments)))
			mu.Unlock()
			var ret any = map[string]any{}
			switch cmd.Execute {
			case "stop":
				running = false
			case "cont":
				running = true
			case "query-status":
				st := map[bool]string{true: "running", false: "paused"}[running]
				ret = map[string]any{"running": running, "status": st, "singlestep": false}
			case "human-monitor-command":
				ret = "ok\r\n"
			case "qmp_capabilities":
			default:
				enc.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + cmd.Execute + " has not been found"}, "id": cmd.ID})
				continue
			}
			enc.Encode(map[string]any{"return": ret, "id": cmd.ID})
		}
	}()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

func TestQMPSubcommand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string
		sent     []string
	}{
		{"stop reports the state", []string{"stop"}, 0, "{}\nstatus: paused\n", "", []string{"qmp_capabilities", "stop", "query-status"}},
		{"cont reports the state", []string{"cont"}, 0, "{}\nstatus: running\n", "", []string{"qmp_capabilities", "cont", "query-status"}},
		{"a query prints its return value", []string{"query-status"}, 0, `{"running":true,"singlestep":false,"status":"running"}` + "\n", "", []string{"qmp_capabilities", "query-status"}},
		{"arguments are passed", []string{"human-monitor-command", `{"command-line": "info status"}`}, 0, `"ok\r\n"` + "\n", "", []string{"qmp_capabilities", `human-monitor-command {"command-line":"info status"}`}},
		{"QEMU's refusal", []string{"bogus"}, 1, "", "CommandNotFound", []string{"qmp_capabilities", "bogus"}},
		{"bad arguments", []string{"stop", "[1]"}, 2, "", "want a JSON object", nil},
		{"no command", nil, 2, "", "usage:", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sent := fakeAdminQMP(t, dir)
			var out, errOut strings.Builder
			code := Main(append([]string{QMPCommand, "--run-dir", dir}, tc.args...), &out, &errOut)
			if code != tc.code || out.String() != tc.out || !strings.Contains(errOut.String(), tc.err) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, stderr with %q", code, out.String(), errOut.String(), tc.code, tc.out, tc.err)
			}
			if tc.sent != nil && strings.Join(sent(), "|") != strings.Join(tc.sent, "|") {
				t.Errorf("QEMU got %q, want %q", sent(), tc.sent)
			}
		})
	}
}

func TestQMPSubcommandNoVM(t *testing.T) {
	var out, errOut strings.Builder
	if code := Main([]string{QMPCommand, "--run-dir", t.TempDir(), "stop"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "is the VM running in this container?") {
		t.Errorf("exit %d, stderr %q", code, errOut.String())
	}
}
