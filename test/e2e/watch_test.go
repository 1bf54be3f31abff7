package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"
)

type watchEvent struct {
	Type   string `json:"type"`
	Object struct {
		Metadata objectMeta `json:"metadata"`
	} `json:"object"`
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestWatch(t *testing.T) {
	t.Parallel()
	s := sharedServer(t)
	ns := newNamespace(t, s)
	// Seen by the watch's initial list; proves the watch is established.
	s.MustKubectl("create", "configmap", "sentinel", "-n", ns)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := s.KubectlClient().Command(ctx, "get", "configmaps", "-n", ns, "-w", "--output-watch-events", "-o", "json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	events := make(chan watchEvent, 256)
	decoded := make(chan error, 1)
	go func() {
		defer close(events)
		dec := json.NewDecoder(stdout)
		for {
			var ev watchEvent
			if err := dec.Decode(&ev); err != nil {
				decoded <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()

	// next waits for an event on the object named name and returns its type.
	next := func(name string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("watch ended before an event on %s (%v); kubectl stderr:\n%s", name, <-decoded, stderr.String())
				}
				if ev.Object.Metadata.Name == name {
					return ev.Type
				}
			case <-timeout:
				t.Fatalf("no watch event on %s within 30s; kubectl stderr:\n%s", name, stderr.String())
			}
		}
	}
	if got := next("sentinel"); got != "ADDED" {
		t.Fatalf("first event on sentinel = %s, want ADDED", got)
	}

	s.MustKubectl("create", "configmap", "watched", "-n", ns, "--from-literal=k=v1")
	s.MustKubectl("patch", "configmap", "watched", "-n", ns, "--type=merge", "-p", `{"data":{"k":"v2"}}`)
	s.MustKubectl("delete", "configmap", "watched", "-n", ns)
	var got []string
	for len(got) < 3 {
		got = append(got, next("watched"))
	}
	if want := []string{"ADDED", "MODIFIED", "DELETED"}; !slices.Equal(got, want) {
		t.Errorf("watch events on watched = %v, want %v", got, want)
	}
}
