package pki

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
)

// JoinToken is a bootstrap token ("<id>.<secret>") that lets a new node
// authenticate once to request its own credentials.
type JoinToken struct {
	ID, Secret string
}

func (t JoinToken) String() string { return t.ID + "." + t.Secret }

// BootstrapTokenGroup is the extra group of Strata's join tokens, which the
// server's RBAC lets request node client certificates.
const BootstrapTokenGroup = "system:bootstrappers:strata:default-node-token"

var tokenRE = regexp.MustCompile(`^` + bootstrapapi.BootstrapTokenPattern + `$`)

// NewJoinToken generates a random bootstrap token.
func NewJoinToken() (JoinToken, error) {
	s, err := bootstraputil.GenerateBootstrapToken()
	if err != nil {
		return JoinToken{}, err
	}
	return ParseJoinToken(s)
}

// ParseJoinToken validates s as "<6 chars [a-z0-9]>.<16 chars [a-z0-9]>".
func ParseJoinToken(s string) (JoinToken, error) {
	if !tokenRE.MatchString(s) {
		return JoinToken{}, fmt.Errorf("token %q: must match [a-z0-9]{6}.[a-z0-9]{16}", s)
	}
	id, secret, _ := strings.Cut(s, ".")
	return JoinToken{ID: id, Secret: secret}, nil
}

// BootstrapTokenSecret builds the kube-system Secret that makes t valid for
// authentication and for signing cluster-info, expiring after ttl (0 = never).
func BootstrapTokenSecret(t JoinToken, ttl time.Duration, description string, now time.Time) *corev1.Secret {
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:               []byte(t.ID),
		bootstrapapi.BootstrapTokenSecretKey:           []byte(t.Secret),
		bootstrapapi.BootstrapTokenUsageSigningKey:     []byte("true"),
		bootstrapapi.BootstrapTokenUsageAuthentication: []byte("true"),
		bootstrapapi.BootstrapTokenExtraGroupsKey:      []byte(BootstrapTokenGroup),
	}
	if description != "" {
		data[bootstrapapi.BootstrapTokenDescriptionKey] = []byte(description)
	}
	if ttl > 0 {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(now.Add(ttl).UTC().Format(time.RFC3339))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      bootstrapapi.BootstrapTokenSecretPrefix + t.ID,
			Namespace: metav1.NamespaceSystem,
		},
		Type: bootstrapapi.SecretTypeBootstrapToken,
		Data: data,
	}
}
