package pki

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLoadOrCreateCAIsStable(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	if !first.Cert.Equal(second.Cert) {
		t.Fatal("second load created a new CA")
	}
	if first.Hash() != second.Hash() || len(first.Hash()) != len("sha256:")+64 {
		t.Fatalf("unexpected CA hash %q", first.Hash())
	}
}

func TestCorruptFilesAreRefusedAndKept(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(dir string) string // returns the damaged file
	}{
		{"garbage CA cert", func(dir string) string {
			p := filepath.Join(dir, "ca.crt")
			os.WriteFile(p, []byte("not a certificate"), 0o644)
			return p
		}},
		{"garbage leaf cert", func(dir string) string {
			p := filepath.Join(dir, "apiserver.crt")
			os.WriteFile(p, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o644)
			return p
		}},
		{"missing CA key", func(dir string) string {
			os.Remove(filepath.Join(dir, "ca.key"))
			return filepath.Join(dir, "ca.crt")
		}},
		{"swapped leaf key", func(dir string) string {
			data, _ := os.ReadFile(filepath.Join(dir, "etcd-client.key"))
			p := filepath.Join(dir, "apiserver.key")
			os.WriteFile(p, data, 0o600)
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, _, err := EnsureCluster(dir, Hosts{DNSNames: []string{"a"}}, time.Now()); err != nil {
				t.Fatal(err)
			}
			damaged := tc.damage(dir)
			before, _ := os.ReadFile(damaged)
			_, _, err := EnsureCluster(dir, Hosts{DNSNames: []string{"a"}}, time.Now())
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("want ErrCorrupt, got %v", err)
			}
			after, _ := os.ReadFile(damaged)
			if string(before) != string(after) {
				t.Fatal("damaged file was rewritten")
			}
		})
	}
}

func TestNeedsReissue(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "ca", "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := LoadOrCreateCA(dir, "other", "other-ca")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	spec := Spec{CommonName: "kube-apiserver", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Usage: ServerAuth}
	if _, err := ca.Ensure(filepath.Join(dir, "s.crt"), filepath.Join(dir, "s.key"), spec, now); err != nil {
		t.Fatal(err)
	}
	cert, err := ReadCert(filepath.Join(dir, "s.crt"))
	if err != nil {
		t.Fatal(err)
	}
	withIP := spec
	withIP.IPs = append([]net.IP{net.IPv4(10, 0, 0, 5)}, spec.IPs...)
	renamed := spec
	renamed.CommonName = "other"
	for _, tc := range []struct {
		name string
		ca   *Authority
		spec Spec
		at   time.Time
		want bool
	}{
		{"fresh and matching", ca, spec, now, false},
		{"subset of SANs still matches", ca, Spec{CommonName: spec.CommonName, Usage: ServerAuth}, now, false},
		{"new host IP", ca, withIP, now, true},
		{"different subject", ca, renamed, now, true},
		{"other CA", other, spec, now, true},
		{"inside renewal window", ca, spec, cert.NotAfter.Add(-RenewBefore + time.Hour), true},
		{"just outside renewal window", ca, spec, cert.NotAfter.Add(-RenewBefore - time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsReissue(cert, tc.ca.Cert, tc.spec, tc.at); got != tc.want {
				t.Fatalf("NeedsReissue = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEnsureRenewsExpiringAndKeepsValid(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	c, issued, err := EnsureCluster(dir, Hosts{DNSNames: []string{"h"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(issued) != 6 {
		t.Fatalf("first start issued %v", issued)
	}
	_, issued, err = EnsureCluster(dir, Hosts{DNSNames: []string{"h"}}, now.Add(time.Hour))
	if err != nil || len(issued) != 0 {
		t.Fatalf("restart reissued %v (%v)", issued, err)
	}
	later := now.Add(LeafValidity - RenewBefore + time.Hour)
	_, issued, err = EnsureCluster(dir, Hosts{DNSNames: []string{"h"}}, later)
	if err != nil || len(issued) != 6 {
		t.Fatalf("renewal issued %v (%v)", issued, err)
	}
	cert, err := ReadCert(c.APIServerCert)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.After(later.Add(RenewBefore)) {
		t.Fatalf("renewed cert expires %v", cert.NotAfter)
	}
	if err := cert.CheckSignatureFrom(c.CA.Cert); err != nil {
		t.Fatalf("renewed cert not signed by the same CA: %v", err)
	}
	info, err := os.Stat(c.APIServerKey)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v (%v)", info.Mode(), err)
	}
}

func TestJoinToken(t *testing.T) {
	tok, err := NewJoinToken()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseJoinToken(tok.String()); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc.def", "ABCDEF.0123456789abcdef", "abcdef0123456789abcdef", "abcdef.0123456789abcde!"} {
		if _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("ParseJoinToken(%q) accepted", bad)
		}
	}
	s := BootstrapTokenSecret(tok, time.Hour, "test", time.Unix(0, 0))
	if s.Name != "bootstrap-token-"+tok.ID || s.Namespace != "kube-system" || string(s.Type) != "bootstrap.kubernetes.io/token" {
		t.Fatalf("unexpected secret %s/%s %s", s.Namespace, s.Name, s.Type)
	}
	if got := string(s.Data["expiration"]); got != "1970-01-01T01:00:00Z" {
		t.Fatalf("expiration %q", got)
	}
}
