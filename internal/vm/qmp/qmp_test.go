package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeQEMU serves one QMP connection: it greets, accepts
// qmp_capabilities, then hands each command to handle, which writes
// whatever replies and events it likes.
type fakeQEMU struct {
	t    *testing.T
	path string
	ln   net.Listener
	// handle answers a command; returning true drops the connection.
	handle func(w *json.Encoder, cmd map[string]any) bool
	// capsError makes qmp_capabilities fail.
	capsError bool
	// noGreeting makes the server say nothing.
	noGreeting bool
}

func startFake(t *testing.T, handle func(w *json.Encoder, cmd map[string]any) bool) *fakeQEMU {
	t.Helper()
	f := &fakeQEMU{t: t, path: filepath.Join(t.TempDir(), "qmp.sock"), handle: handle}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.ln = ln
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakeQEMU) serve() {
	conn, err := f.ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	if f.noGreeting {
		time.Sleep(5 * time.Second)
		return
	}
	enc := json.NewEncoder(conn)
	enc.Encode(map[string]any{"QMP": map[string]any{
		"version":      map[string]any{"qemu": map[string]int{"major": 7, "minor": 2, "micro": 22}, "package": "Debian 1:7.2+dfsg-7"},
		"capabilities": []string{"oob"},
	}})
	sc := bufio.NewScanner(conn)
	caps := false
	for sc.Scan() {
		var cmd map[string]any
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			f.t.Errorf("fake QEMU: bad command %q: %v", sc.Bytes(), err)
			return
		}
		if !caps {
			if cmd["execute"] != "qmp_capabilities" {
				enc.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}, "id": cmd["id"]})
				continue
			}
			if f.capsError {
				enc.Encode(map[string]any{"error": map[string]string{"class": "GenericError", "desc": "no"}, "id": cmd["id"]})
				return
			}
			caps = true
			enc.Encode(map[string]any{"return": map[string]any{}, "id": cmd["id"]})
			continue
		}
		if f.handle(enc, cmd) {
			return
		}
	}
}

func event(name string, data any) map[string]any {
	return map[string]any{"event": name, "data": data, "timestamp": map[string]int64{"seconds": 1700000000, "microseconds": 250}}
}

func TestCommandsAndEvents(t *testing.T) {
	running := true
	f := startFake(t, func(w *json.Encoder, cmd map[string]any) bool {
		id := cmd["id"]
		switch cmd["execute"] {
		case "query-status":
			st := "running"
			if !running {
				st = "paused"
			}
			w.Encode(map[string]any{"return": map[string]any{"running": running, "status": st, "singlestep": false}, "id": id})
		case "query-name":
			w.Encode(map[string]any{"return": map[string]any{"name": "vm1"}, "id": id})
		case "stop":
			running = false
			w.Encode(map[string]any{"return": map[string]any{}, "id": id})
			w.Encode(event("STOP", nil))
		case "cont":
			running = true
			w.Encode(event("RESUME", nil))
			w.Encode(map[string]any{"return": map[string]any{}, "id": id})
		case "system_powerdown":
			w.Encode(map[string]any{"return": map[string]any{}, "id": id})
			w.Encode(event("POWERDOWN", nil))
			w.Encode(event("SHUTDOWN", map[string]any{"guest": true, "reason": "guest-shutdown"}))
		case "human-monitor-command":
			args, _ := cmd["arguments"].(map[string]any)
			w.Encode(map[string]any{"return": "echo:" + args["command-line"].(string), "id": id})
		default:
			w.Encode(map[string]any{"error": map[string]string{"class": "CommandNotFound", "desc": "The command " + cmd["execute"].(string) + " has not been found"}, "id": id})
		}
		return false
	})
	go f.serve()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.Version(); v.Major != 7 || v.Minor != 2 || v.Micro != 22 || v.Package == "" {
		t.Errorf("version = %+v", v)
	}

	st, err := c.QueryStatus(ctx)
	if err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("query-status = %+v, %v", st, err)
	}
	if name, err := c.QueryName(ctx); err != nil || name != "vm1" {
		t.Fatalf("query-name = %q, %v", name, err)
	}
	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.QueryStatus(ctx); st.Running || st.Status != "paused" {
		t.Errorf("after stop: %+v", st)
	}
	if err := c.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	var out string
	if err := c.Execute(ctx, "human-monitor-command", map[string]string{"command-line": "info version"}, &out); err != nil || out != "echo:info version" {
		t.Errorf("arguments round trip: %q, %v", out, err)
	}
	err = c.Execute(ctx, "no-such-command", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}

	var names []string
	for len(names) < 4 {
		select {
		case ev := <-c.Events():
			names = append(names, ev.Name)
			if ev.Time.Unix() != 1700000000 {
				t.Errorf("event time = %v", ev.Time)
			}
			if ev.Name == "SHUTDOWN" {
				var sd ShutdownEvent
				if err := json.Unmarshal(ev.Data, &sd); err != nil || !sd.Guest || sd.Reason != "guest-shutdown" {
					t.Errorf("SHUTDOWN data = %s (%v)", ev.Data, err)
				}
			}
		case <-ctx.Done():
			t.Fatalf("events so far %v: %v", names, ctx.Err())
		}
	}
	want := []string{"STOP", "RESUME", "POWERDOWN", "SHUTDOWN"}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("events = %v, want %v", names, want)
		}
	}
}

func TestCommandTimeoutAndDisconnect(t *testing.T) {
	hang := make(chan struct{})
	calls := 0
	f := startFake(t, func(w *json.Encoder, cmd map[string]any) bool {
		calls++
		if calls == 1 {
			return false // never answer the first
		}
		<-hang // hold the second until told, then drop the connection
		return true
	})
	served := make(chan struct{})
	go func() { f.serve(); close(served) }()

	c, err := Dial(context.Background(), f.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := c.QueryStatus(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want deadline exceeded, got %v", err)
	}

	// A command in flight when QEMU goes away fails with ErrClosed.
	errc := make(chan error, 1)
	go func() { _, err := c.QueryStatus(context.Background()); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	close(hang)
	<-served
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("in-flight command: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("in-flight command never failed")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed")
	}
	if _, ok := <-c.Events(); ok {
		t.Error("Events still open after disconnect")
	}
	if err := c.Stop(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("command after disconnect: %v", err)
	}
	// quit on a connection QEMU already closed is what quitting looks like.
	if err := c.Quit(context.Background()); err != nil {
		t.Errorf("quit after disconnect: %v", err)
	}
}

func TestHandshakeFailures(t *testing.T) {
	t.Run("capabilities refused", func(t *testing.T) {
		f := startFake(t, nil)
		f.capsError = true
		go f.serve()
		if _, err := Dial(context.Background(), f.path); err == nil {
			t.Fatal("want error")
		}
	})
	t.Run("no greeting", func(t *testing.T) {
		f := startFake(t, nil)
		f.noGreeting = true
		go f.serve()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Dial(ctx, f.path)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("want deadline exceeded, got %v", err)
		}
		if time.Since(start) > 2*time.Second {
			t.Errorf("took %v", time.Since(start))
		}
	})
	t.Run("no socket", func(t *testing.T) {
		if _, err := Dial(context.Background(), filepath.Join(t.TempDir(), "none")); err == nil {
			t.Fatal("want error")
		}
	})
}
