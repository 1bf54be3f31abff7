// Package osapitest is what the OpenStack API packages' handler tests
// share: a fake Keystone, a fake Kubernetes client that fills in what the
// API server would, the usual callers, and a JSON HTTP call.
package osapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/uuid"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/strata-cloud/strata/internal/openstack/auth"
)

// Tokens is a fake Keystone: a token's identity.
type Tokens map[string]auth.Identity

// Authenticate implements auth.Authenticator.
func (t Tokens) Authenticate(_ context.Context, token string) (auth.Identity, error) {
	id, ok := t[token]
	if !ok {
		return auth.Identity{}, auth.ErrUnauthorized
	}
	return id, nil
}

// Callers are the tokens of the usual test callers: member, reader and
// admin of project p1 (namespace p1), other (a member of p2) and noscope
// (no project).
func Callers() Tokens {
	return Tokens{
		"member":  {UserID: "alice-id", UserName: "alice", ProjectID: "p1", Namespace: "p1", Roles: []string{"member"}},
		"reader":  {UserID: "bob-id", UserName: "bob", ProjectID: "p1", Namespace: "p1", Roles: []string{"reader"}},
		"admin":   {UserID: "admin-id", UserName: "admin", ProjectID: "p1", Namespace: "p1", Roles: []string{"admin"}},
		"other":   {UserID: "eve-id", UserName: "eve", ProjectID: "p2", Namespace: "p2", Roles: []string{"member"}},
		"noscope": {UserName: "carol"},
	}
}

// Client is a fake client over objs, with the kinds adds registers; a
// created object gets a UID and a creation time, as from the API server.
// funcs intercepts further calls (its Create runs after those are set).
// The builder's other options (status subresources) come through opts.
func Client(t testing.TB, adds []func(*runtime.Scheme) error, objs []client.Object, funcs interceptor.Funcs, opts ...func(*fake.ClientBuilder)) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range adds {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	b := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...)
	for _, o := range opts {
		o(b)
	}
	create := funcs.Create
	funcs.Create = func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if obj.GetUID() == "" {
			obj.SetUID(uuid.NewUUID())
		}
		if ts := obj.GetCreationTimestamp(); ts.IsZero() {
			obj.SetCreationTimestamp(metav1.Now())
		}
		if create != nil {
			return create(ctx, c, obj, opts...)
		}
		return c.Create(ctx, obj, opts...)
	}
	return interceptor.NewClient(b.Build(), funcs)
}

// Response is an API's answer: its code, its JSON body (empty if none)
// and headers.
type Response struct {
	Code   int
	Body   map[string]any
	Header http.Header
}

// Do sends method url with body (nil, a string as is, else JSON) and the
// header pairs given (name, value, …; an empty value is left out), and
// decodes a JSON answer.
func Do(t testing.TB, method, url string, body any, header ...string) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	out := map[string]any{}
	b, _ := io.ReadAll(r.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %d %s", method, url, r.StatusCode, b)
		}
	}
	return Response{r.StatusCode, out, r.Header}
}
