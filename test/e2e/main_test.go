package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-cloud/strata/internal/testenv"
)

// sharedState holds the server that most tests share. It is the package's
// only mutable global: started on first use, stopped by TestMain.
var sharedState struct {
	once sync.Once
	srv  *testenv.Server
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if srv := sharedState.srv; srv != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "shared strata server log (%s), last 32 KiB:\n%s\n", srv.LogPath(), lastBytes(srv.Log(), 32<<10))
		}
		// Stopping it gracefully is itself checked: exit code 0 within
		// testenv.StopTimeout.
		if err := srv.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: shared strata server: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// sharedServer returns the package's shared server bound to t, starting it
// on first use.
func sharedServer(t *testing.T) *testenv.Server {
	t.Helper()
	testenv.RequireHost(t)
	testenv.Binary(t)
	sharedState.once.Do(func() {
		sharedState.srv, sharedState.err = testenv.StartShared(testenv.Options{})
	})
	if sharedState.err != nil {
		t.Fatalf("shared strata server: %v", sharedState.err)
	}
	if err := sharedState.srv.CheckRunning(); err != nil {
		t.Fatalf("shared strata server: %v", err)
	}
	return sharedState.srv.For(t)
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// newNamespace creates a namespace for t, named after it, and deletes it
// (without waiting) when t ends.
func newNamespace(t *testing.T, s *testenv.Server) string {
	t.Helper()
	name := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 50 {
		name = strings.TrimRight(name[:50], "-")
	}
	name += "-" + randomSuffix(t)
	s.MustKubectl("create", "namespace", name)
	t.Cleanup(func() {
		s.Kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found")
	})
	return name
}

func randomSuffix(t *testing.T) string {
	t.Helper()
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// jsonpath returns kubectl's output for a jsonpath template over args.
func jsonpath(t *testing.T, s *testenv.Server, template string, args ...string) string {
	t.Helper()
	return s.MustKubectl(append(args, "-o", "jsonpath="+template)...)
}

// getJSON decodes `kubectl get ARGS -o json` into out.
func getJSON(t *testing.T, s *testenv.Server, out any, args ...string) {
	t.Helper()
	data := s.MustKubectl(append(append([]string{"get"}, args...), "-o", "json")...)
	if err := json.Unmarshal([]byte(data), out); err != nil {
		t.Fatalf("kubectl get %s -o json: %v\n%s", strings.Join(args, " "), err, data)
	}
}

// isNotFound reports whether kubectl failed because the object is missing.
func isNotFound(r testenv.Result) bool {
	return r.Err != nil && strings.Contains(r.Stderr, "NotFound")
}

// requireNotFound fails t unless `kubectl get ARGS` says NotFound.
func requireNotFound(t *testing.T, s *testenv.Server, args ...string) {
	t.Helper()
	if r := s.Kubectl(append([]string{"get"}, args...)...); !isNotFound(r) {
		t.Fatalf("kubectl get %s: want NotFound, got %s", strings.Join(args, " "), r)
	}
}

func decodeBase64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return string(b)
}

// objectMeta is the part of an object the tests read.
type objectMeta struct {
	Name            string            `json:"name"`
	Namespace       string            `json:"namespace"`
	UID             string            `json:"uid"`
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	OwnerReferences []struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	} `json:"ownerReferences"`
	ManagedFields []struct {
		Manager   string          `json:"manager"`
		Operation string          `json:"operation"`
		FieldsV1  json.RawMessage `json:"fieldsV1"`
	} `json:"managedFields"`
}

type configMap struct {
	Metadata objectMeta        `json:"metadata"`
	Data     map[string]string `json:"data"`
}

type pod struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		Phase      string `json:"phase"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
			Reason string `json:"reason"`
		} `json:"conditions"`
	} `json:"status"`
}

type list[T any] struct {
	Items []T `json:"items"`
}

// Timeouts for things the control plane does asynchronously.
const (
	controllerTimeout = 60 * time.Second
	nsDeleteTimeout   = 120 * time.Second
)

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...]" + s[len(s)-n:]
}
