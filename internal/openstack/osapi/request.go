package osapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// MaxBody bounds a request body.
const MaxBody = 1 << 20

// Body decodes a request body {"<key>": {...}} into out.
func Body(r *http.Request, key string, out any) error {
	outer, err := RawBody(r)
	if err != nil {
		return err
	}
	inner, ok := outer[key]
	if !ok || string(inner) == "null" {
		return BadRequest("Invalid input for field/attribute %s. Value: None. '%s' is a required property", key, key)
	}
	if err := json.Unmarshal(inner, out); err != nil {
		return BadRequest("Invalid input for field/attribute %s: %v", key, jsonReason(err))
	}
	return nil
}

// RawBody decodes a whole request body as a JSON object.
func RawBody(r *http.Request) (map[string]json.RawMessage, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, MaxBody))
	if err != nil {
		return nil, BadRequest("Cannot read the request body: %v", err)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(b, &outer); err != nil || outer == nil {
		return nil, BadRequest("Malformed request body")
	}
	return outer, nil
}

func jsonReason(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s is not of type %s", te.Field, te.Type)
	}
	return err.Error()
}

// Access is what a call needs of its caller.
type Access int

const (
	// Read needs any role on the project (reader).
	Read Access = iota
	// Write needs member.
	Write
	// Admin needs admin.
	Admin
)

// Gate lets a caller of the API named api (for the message) through, or
// says why not: a token without a project, or without the role need asks.
func Gate(id auth.Identity, need Access, api string) *Error {
	switch {
	case id.Namespace == "":
		return Forbidden("The %s API needs a project-scoped token.", api)
	case need == Admin && !id.HasRole("admin"):
		return Forbidden("Policy doesn't allow this operation to be performed: it needs the admin role.")
	case need == Write && !id.HasRole("member"):
		return Forbidden("Policy doesn't allow this operation to be performed: it needs the member role.")
	case !id.HasRole("reader"):
		return Forbidden("Policy doesn't allow this operation to be performed: it needs a role on the project.")
	}
	return nil
}

// BaseURL is the scheme and host the client reached the server at.
func BaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// IsStale is a write that lost a race with another: read and try again.
func IsStale(err error) bool {
	return apierrors.IsConflict(err) && strings.Contains(err.Error(), "the object has been modified")
}

// RetryUpdate reads obj (key), applies mutate and writes it, again on a
// lost race.
func RetryUpdate(ctx context.Context, c client.Client, obj client.Object, key types.NamespacedName, mutate func() error) error {
	return retry.OnError(retry.DefaultRetry, IsStale, func() error {
		if err := c.Get(ctx, key, obj); err != nil {
			return err
		}
		if err := mutate(); err != nil {
			return err
		}
		return c.Update(ctx, obj)
	})
}

// ProjectIDs maps a namespace to its Keystone project's ID (as
// neutron.ProjectIDs).
type ProjectIDs interface {
	ProjectID(ctx context.Context, namespace string) (string, error)
}

// ProjectOf is the project ID of namespace ns for caller id: its token's
// project for its own namespace, else what projects says, else the
// namespace's name.
func ProjectOf(ctx context.Context, id auth.Identity, projects ProjectIDs, ns string) string {
	if ns == id.Namespace {
		return id.ProjectID
	}
	if projects != nil {
		if pid, err := projects.ProjectID(ctx, ns); err == nil {
			return pid
		}
	}
	return ns
}

// Truthy is an OpenStack boolean query value: true, yes, 1, on, t or y
// (any case).
func Truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "1", "on", "t", "y":
		return true
	}
	return false
}
