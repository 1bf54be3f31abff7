// Package keypair fills in what Strata derives from a KeyPair's public key
// (its fingerprint, as Nova shows it) and generates key pairs for
// `strata keypair create`.
package keypair

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
)

// Fingerprint is the MD5 fingerprint of an OpenSSH public key in the
// colon-separated form Nova returns.
func Fingerprint(authorizedKey string) (string, error) {
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return "", fmt.Errorf("public key: %w", err)
	}
	return ssh.FingerprintLegacyMD5(key), nil
}

// Generate makes a new ed25519 key pair: the public key in authorized_keys
// form and the private key in OpenSSH PEM form.
func Generate(comment string) (public string, private []byte, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return "", nil, err
	}
	public = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sshPub)))
	if comment != "" {
		public += " " + comment
	}
	return public, pem.EncodeToMemory(block), nil
}

// Reconciler writes each KeyPair's fingerprint and type into its status.
type Reconciler struct {
	Client client.Client
}

// SetupWithManager registers the reconciler.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("keypair").For(&computev1alpha1.KeyPair{}).Complete(r)
}

// Reconcile fills in one KeyPair's status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	kp := &computev1alpha1.KeyPair{}
	if err := r.Client.Get(ctx, req.NamespacedName, kp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	fp, err := Fingerprint(kp.Spec.PublicKey)
	if err != nil {
		// The schema admits only OpenSSH-shaped keys; one that still does
		// not parse keeps an empty fingerprint and says why.
		fp = "invalid: " + err.Error()
	}
	want := computev1alpha1.KeyPairStatus{Fingerprint: fp, Type: "ssh"}
	if kp.Status == want {
		return ctrl.Result{}, nil
	}
	kp = kp.DeepCopy()
	kp.Status = want
	return ctrl.Result{}, client.IgnoreNotFound(r.Client.Status().Update(ctx, kp))
}
