// Package pki owns Strata's certificate authorities, the certificates issued
// from them, the service-account signing key, and their renewal. Everything is
// plain files under one directory (PEM, 0600 for keys); nothing is ever
// overwritten unless it is missing, expiring, or no longer matches what it is
// meant to certify.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	// CAValidity is how long a newly created certificate authority is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long an issued certificate is valid.
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore is how long before expiry a leaf certificate is reissued.
	// Renewal runs at start and in a background loop, so a cluster that runs
	// for years never serves an expired certificate.
	RenewBefore = 90 * 24 * time.Hour
)

// ErrCorrupt marks a file that exists but cannot be used; Strata refuses to
// replace such files silently.
var ErrCorrupt = errors.New("corrupt PKI file")

// Authority is a certificate authority whose key is available for signing.
type Authority struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPath string
	KeyPath  string
}

// Usage says what an issued certificate is for.
type Usage int

const (
	// ClientAuth certificates authenticate a client to a server.
	ClientAuth Usage = 1 << iota
	// ServerAuth certificates identify a server.
	ServerAuth
)

// Spec describes a leaf certificate.
type Spec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	Usage        Usage
}

// LoadOrCreateCA loads the CA at dir/name.{crt,key}, creating it if neither
// file exists. A half-present or unreadable CA is an error: replacing a CA
// would invalidate every credential issued from it.
func LoadOrCreateCA(dir, name, commonName string) (*Authority, error) {
	certPath, keyPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certExists, keyExists := exists(certPath), exists(keyPath)
	switch {
	case certExists && keyExists:
		cert, err := ReadCert(certPath)
		if err != nil {
			return nil, err
		}
		key, err := ReadKey(keyPath)
		if err != nil {
			return nil, err
		}
		if !cert.IsCA {
			return nil, fmt.Errorf("%s: %w: not a CA certificate", certPath, ErrCorrupt)
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			return nil, fmt.Errorf("%s: %w: key does not match certificate %s", keyPath, ErrCorrupt, certPath)
		}
		return &Authority{Cert: cert, Key: key, CertPath: certPath, KeyPath: keyPath}, nil
	case certExists != keyExists:
		missing := keyPath
		if !certExists {
			missing = certPath
		}
		return nil, fmt.Errorf("%s: %w: missing while its pair exists; restore it from backup (a new CA would invalidate every issued credential)", missing, ErrCorrupt)
	}
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s@%d", commonName, now.Unix())},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", name, err)
	}
	cert, _ := x509.ParseCertificate(der)
	if err := writeKeyPair(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	return &Authority{Cert: cert, Key: key, CertPath: certPath, KeyPath: keyPath}, nil
}

// CertPEM returns the CA certificate in PEM form.
func (a *Authority) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.Cert.Raw})
}

// Hash returns the CA's public-key pin in kubeadm's form ("sha256:<hex>"),
// which joining nodes use to trust the cluster without a pre-shared CA file.
func (a *Authority) Hash() string {
	sum := sha256.Sum256(a.Cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Ensure makes sure certPath/keyPath hold a certificate for spec signed by a,
// issuing a new one when missing, expiring within RenewBefore, signed by a
// different CA, or not matching spec. It reports whether it issued one. A
// file that exists but cannot be parsed is an error, never overwritten.
func (a *Authority) Ensure(certPath, keyPath string, spec Spec, now time.Time) (bool, error) {
	if exists(certPath) || exists(keyPath) {
		cert, err := ReadCert(certPath)
		if err != nil {
			return false, err
		}
		key, err := ReadKey(keyPath)
		if err != nil {
			return false, err
		}
		if !publicKeysEqual(cert.PublicKey, key.Public()) {
			return false, fmt.Errorf("%s: %w: key does not match certificate %s", keyPath, ErrCorrupt, certPath)
		}
		if !NeedsReissue(cert, a.Cert, spec, now) {
			return false, nil
		}
	}
	if err := a.issue(certPath, keyPath, spec, now); err != nil {
		return false, err
	}
	return true, nil
}

// NeedsReissue reports whether cert must be replaced to certify spec under ca
// at time now. It is pure so that renewal decisions are testable.
func NeedsReissue(cert, ca *x509.Certificate, spec Spec, now time.Time) bool {
	if now.Add(RenewBefore).After(cert.NotAfter) {
		return true
	}
	if cert.CheckSignatureFrom(ca) != nil {
		return true
	}
	if cert.Subject.CommonName != spec.CommonName || !sameStrings(cert.Subject.Organization, spec.Organization) {
		return true
	}
	for _, d := range spec.DNSNames {
		if !slices.Contains(cert.DNSNames, d) {
			return true
		}
	}
	for _, ip := range spec.IPs {
		if !slices.ContainsFunc(cert.IPAddresses, ip.Equal) {
			return true
		}
	}
	return false
}

// Issue creates a certificate and key for spec in memory, for callers that
// hand credentials out rather than store them (such as kubeconfigs).
func (a *Authority) Issue(spec Spec, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	der, err := a.sign(spec, key.Public(), now)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

func (a *Authority) issue(certPath, keyPath string, spec Spec, now time.Time) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	der, err := a.sign(spec, key.Public(), now)
	if err != nil {
		return err
	}
	return writeKeyPair(certPath, keyPath, der, key)
}

func (a *Authority) sign(spec Spec, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	var ext []x509.ExtKeyUsage
	if spec.Usage&ServerAuth != 0 {
		ext = append(ext, x509.ExtKeyUsageServerAuth)
	}
	if spec.Usage&ClientAuth != 0 {
		ext = append(ext, x509.ExtKeyUsageClientAuth)
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(a.Cert.NotAfter) {
		notAfter = a.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		DNSNames:              spec.DNSNames,
		IPAddresses:           spec.IPs,
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           ext,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Cert, pub, a.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %q: %w", spec.CommonName, err)
	}
	return der, nil
}

// EnsureServiceAccountKey creates the RSA key pair that signs service-account
// tokens at dir/sa.{key,pub} unless it exists. It is never rotated
// automatically: rotating it would invalidate every issued token.
func EnsureServiceAccountKey(dir string) (keyPath, pubPath string, err error) {
	keyPath, pubPath = filepath.Join(dir, "sa.key"), filepath.Join(dir, "sa.pub")
	if exists(keyPath) {
		key, err := ReadKey(keyPath)
		if err != nil {
			return "", "", err
		}
		if _, ok := key.(*rsa.PrivateKey); !ok {
			return "", "", fmt.Errorf("%s: %w: service-account key must be RSA", keyPath, ErrCorrupt)
		}
		if !exists(pubPath) {
			return keyPath, pubPath, writePublicKey(pubPath, key.Public())
		}
		return keyPath, pubPath, nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	return keyPath, pubPath, writePublicKey(pubPath, key.Public())
}

// ReadCert parses the first certificate in a PEM file.
func ReadCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: %w: no PEM certificate found", path, ErrCorrupt)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	return cert, nil
}

// ReadKey parses a PEM private key (PKCS#8, PKCS#1 or SEC 1).
func ReadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: %w: no PEM private key found", path, ErrCorrupt)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		err = fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v", path, ErrCorrupt, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %w: key cannot sign", path, ErrCorrupt)
	}
	return signer, nil
}

func newKey() (crypto.Signer, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func writeKeyPair(certPath, keyPath string, certDER []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Key first: a crash between the two writes leaves a mismatched pair,
	// which Ensure reports instead of silently trusting.
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644)
}

func writePublicKey(path string, pub crypto.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}

// writeFile replaces path atomically (temp file, fsync, rename).
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// WriteFileAtomic writes data to path atomically with the given mode.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return writeFile(path, data, mode)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	da, err1 := x509.MarshalPKIXPublicKey(a)
	db, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(da, db)
}

func sameStrings(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}
