package cli

import (
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestEscapeReader(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
		escaped        bool
	}{
		{"no escape: everything, then EOF", "ls -l\r", "ls -l\r", false},
		{"stops before the escape", "echo hi\n\x1dafter", "echo hi\n", true},
		{"escape first", "\x1dls\n", "", true},
		{"escape last", "ls\n\x1d", "ls\n", true},
		{"other control keys pass", "\x03\x04\x1b[A", "\x03\x04\x1b[A", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// One byte per read, and all at once.
			for _, src := range []io.Reader{iotest.OneByteReader(strings.NewReader(tc.in)), strings.NewReader(tc.in)} {
				e := newEscapeReader(src)
				got, err := io.ReadAll(e)
				if err != nil || string(got) != tc.want {
					t.Errorf("read %q, %v; want %q", got, err, tc.want)
				}
				select {
				case <-e.escaped:
					if !tc.escaped {
						t.Error("escaped without the escape character")
					}
				default:
					if tc.escaped {
						t.Error("escape not reported")
					}
				}
				if n, err := e.Read(make([]byte, 8)); tc.escaped && (n != 0 || err != io.EOF) {
					t.Errorf("read after the escape = %d, %v; want EOF", n, err)
				}
			}
		})
	}
}

func TestRunStateOf(t *testing.T) {
	for out, want := range map[string]string{
		"{}\nstatus: paused\n":  "paused",
		"{}\nstatus: running\n": "running",
		"{}\n":                  "",
		"":                      "",
	} {
		if got := runStateOf(out); got != want {
			t.Errorf("runStateOf(%q) = %q, want %q", out, got, want)
		}
	}
}
