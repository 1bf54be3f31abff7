package keystone

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkValidate validates one member's token, with the validation
// cache on and off, over the fake client (no API server latency: this
// measures Keystone's own cost; bench/keystone measures a real server).
func BenchmarkValidate(b *testing.B) {
	t := &testing.T{}
	for _, ttl := range []time.Duration{-1, DefaultValidationCacheTTL} {
		name := "cache=off"
		if ttl > 0 {
			name = "cache=" + ttl.String()
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(t)
			e.t = t
			admin, _ := e.token("admin", "secret", projectScope("admin"))
			e.withUser(admin, "p1", "u1", "member")
			for i := range 20 { // other users' assignments to scan
				e.withUser(admin, "", fmt.Sprintf("other%d", i), "")
			}
			tok, _ := e.token("u1", "x", projectScope("p1"))
			e.k.cache.ttl = ttl
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if _, err := e.k.Authenticate(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
