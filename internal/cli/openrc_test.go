package cli

import "testing"

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "abc": "'abc'", "it's": `'it'\''s'`, "$x y": "'$x y'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
