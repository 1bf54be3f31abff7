package keypair

import (
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestGenerateAndFingerprint(t *testing.T) {
	pub, priv, err := Generate("alice@strata")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub, "ssh-ed25519 ") || !strings.HasSuffix(pub, " alice@strata") {
		t.Errorf("public key %q", pub)
	}
	signer, err := ssh.ParsePrivateKey(priv)
	if err != nil {
		t.Fatalf("private key does not parse: %v", err)
	}
	if got := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))); !strings.HasPrefix(pub, got) {
		t.Errorf("private key's public half %q does not match %q", got, pub)
	}
	fp, err := Fingerprint(pub)
	if err != nil {
		t.Fatal(err)
	}
	if len(fp) != 47 || strings.Count(fp, ":") != 15 {
		t.Errorf("fingerprint %q, want 16 colon-separated hex bytes", fp)
	}
	// A known key and its `ssh-keygen -E md5 -lf` fingerprint.
	const known = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl test"
	if fp, err := Fingerprint(known); err != nil || fp != knownFingerprint {
		t.Errorf("fingerprint of the known key = %s (%v), want %s", fp, err, knownFingerprint)
	}
	if _, err := Fingerprint("ssh-ed25519 not-base64"); err == nil {
		t.Error("a malformed key has a fingerprint")
	}
}

// knownFingerprint is what ssh-keygen -E md5 -lf prints for the known key.
const knownFingerprint = "65:96:2d:fc:e8:d5:a9:11:64:0c:0f:ea:00:6e:5b:bd"
