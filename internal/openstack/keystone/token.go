package keystone

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
)

// Secrets of the identity namespace that hold the token machinery.
const (
	signingKeySecret = "keystone-signing-key"
	signingKeyKey    = "key"
	revokedSecret    = "keystone-revoked-tokens"
	// revokedRefresh bounds how stale another server's revocations may be.
	revokedRefresh = 5 * time.Second
)

// claims is what a token says. Tokens are stateless: base64url(JSON claims)
// "." base64url(HMAC-SHA256 of the first part).
type claims struct {
	ID      string `json:"id"`
	User    string `json:"u"`
	UserUID string `json:"uu"`
	Project string `json:"p,omitempty"`
	// AppCred is the application credential the token came from.
	AppCred  string   `json:"ac,omitempty"`
	Methods  []string `json:"m"`
	IssuedAt int64    `json:"iat"`
	Expires  int64    `json:"exp"`
}

func (c claims) expiresAt() time.Time { return time.Unix(c.Expires, 0).UTC() }
func (c claims) issuedAt() time.Time  { return time.Unix(c.IssuedAt, 0).UTC() }

// signer signs and verifies tokens with one key.
type signer struct{ key []byte }

func (s signer) sign(c claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	body := base64.RawURLEncoding.EncodeToString(payload)
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

var errBadToken = errors.New("the token is malformed or its signature is wrong")

// verify checks a token's signature and returns its claims; expiry is the
// caller's to check.
func (s signer) verify(token string) (claims, error) {
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return claims{}, errBadToken
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return claims{}, errBadToken
	}
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(body))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return claims{}, errBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return claims{}, errBadToken
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil || c.ID == "" || c.User == "" {
		return claims{}, errBadToken
	}
	return c, nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// ensureSigningKey returns the signing key, creating it on first start.
func ensureSigningKey(ctx context.Context, c client.Client) ([]byte, error) {
	key := types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: signingKeySecret}
	for range 3 {
		s := &corev1.Secret{}
		err := c.Get(ctx, key, s)
		if err == nil {
			if k := s.Data[signingKeyKey]; len(k) >= 32 {
				return k, nil
			}
			return nil, fmt.Errorf("secret %s has no %d-byte %q", key, 32, signingKeyKey)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read token signing key: %w", err)
		}
		k := make([]byte, 32)
		_, _ = rand.Read(k)
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
			Data:       map[string][]byte{signingKeyKey: k},
		}
		if err := c.Create(ctx, s); err == nil {
			return k, nil
		} else if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create token signing key: %w", err)
		}
		// Another server created it first: read theirs.
	}
	return nil, errors.New("token signing key: gave up after concurrent creations")
}

// revocations is the set of revoked token ids, kept in a Secret (id ->
// expiry, pruned once expired) and cached.
type revocations struct {
	c   client.Client
	now func() time.Time

	mu       sync.Mutex
	revoked  map[string]time.Time
	loadedAt time.Time
}

func (r *revocations) key() types.NamespacedName {
	return types.NamespacedName{Namespace: identityv1alpha1.Namespace, Name: revokedSecret}
}

// isRevoked reports whether token id is revoked, refreshing a stale cache.
func (r *revocations) isRevoked(ctx context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked == nil || r.now().Sub(r.loadedAt) > revokedRefresh {
		s := &corev1.Secret{}
		err := r.c.Get(ctx, r.key(), s)
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("read revoked tokens: %w", err)
		}
		r.revoked = parseRevoked(s.Data)
		r.loadedAt = r.now()
	}
	_, ok := r.revoked[id]
	return ok, nil
}

// revoke adds id (valid until exp) to the list and drops expired entries.
func (r *revocations) revoke(ctx context.Context, id string, exp time.Time) error {
	now := r.now()
	var list map[string]time.Time
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := &corev1.Secret{}
		err := r.c.Get(ctx, r.key(), s)
		create := apierrors.IsNotFound(err)
		if err != nil && !create {
			return err
		}
		list = parseRevoked(s.Data)
		for k, e := range list {
			if !e.After(now) {
				delete(list, k)
			}
		}
		list[id] = exp
		s.Data = formatRevoked(list)
		if create {
			s.ObjectMeta = metav1.ObjectMeta{Namespace: r.key().Namespace, Name: r.key().Name}
			err = r.c.Create(ctx, s)
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("secrets"), s.Name, err)
			}
			return err
		}
		return r.c.Update(ctx, s)
	})
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	r.mu.Lock()
	r.revoked, r.loadedAt = list, now
	r.mu.Unlock()
	return nil
}

func parseRevoked(data map[string][]byte) map[string]time.Time {
	m := make(map[string]time.Time, len(data))
	for id, v := range data {
		if sec, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			m[id] = time.Unix(sec, 0)
		}
	}
	return m
}

func formatRevoked(m map[string]time.Time) map[string][]byte {
	data := make(map[string][]byte, len(m))
	for id, e := range m {
		data[id] = []byte(strconv.FormatInt(e.Unix(), 10))
	}
	return data
}
