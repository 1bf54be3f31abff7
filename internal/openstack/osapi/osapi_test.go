package osapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/strata-cloud/strata/internal/openstack/auth"
)

func TestNegotiate(t *testing.T) {
	r := Range{Min: Version{2, 1}, Max: Version{2, 96}, Services: []string{"compute"}, Legacy: "X-OpenStack-Nova-API-Version"}
	for _, tc := range []struct {
		header []string
		want   Version
		code   int
	}{
		{nil, Version{2, 1}, 0},
		{[]string{"OpenStack-API-Version", "compute 2.60"}, Version{2, 60}, 0},
		{[]string{"OpenStack-API-Version", "volume 3.5, compute latest"}, Version{2, 96}, 0},
		{[]string{"OpenStack-API-Version", "volume 3.5"}, Version{2, 1}, 0},
		{[]string{"X-OpenStack-Nova-API-Version", "2.3"}, Version{2, 3}, 0},
		{[]string{"OpenStack-API-Version", "compute 2.97"}, Version{2, 1}, http.StatusNotAcceptable},
		{[]string{"OpenStack-API-Version", "compute 3.0"}, Version{2, 1}, http.StatusNotAcceptable},
		{[]string{"OpenStack-API-Version", "compute two"}, Version{2, 1}, http.StatusBadRequest},
	} {
		h := http.Header{}
		for i := 0; i+1 < len(tc.header); i += 2 {
			h.Set(tc.header[i], tc.header[i+1])
		}
		got, err := r.Negotiate(h)
		code := 0
		if err != nil {
			code = FromKube(err).Code
		}
		if got != tc.want || code != tc.code {
			t.Errorf("%v: got %s (error %v), want %s (code %d)", tc.header, got, err, tc.want, tc.code)
		}
	}
}

func TestGate(t *testing.T) {
	id := func(ns string, roles ...string) auth.Identity { return auth.Identity{Namespace: ns, Roles: roles} }
	for _, tc := range []struct {
		id   auth.Identity
		need Access
		ok   bool
		msg  string
	}{
		{id("p1", "reader"), Read, true, ""},
		{id("p1", "reader"), Write, false, "member role"},
		{id("p1", "member"), Write, true, ""},
		{id("p1", "member"), Admin, false, "admin role"},
		{id("p1", "admin"), Admin, true, ""},
		{id("p1"), Read, false, "a role on the project"},
		{id("", "admin"), Read, false, "project-scoped token"},
	} {
		e := Gate(tc.id, tc.need, "Compute")
		if (e == nil) != tc.ok || e != nil && (e.Code != http.StatusForbidden || !strings.Contains(e.Message, tc.msg)) {
			t.Errorf("%+v needing %d: %v, want ok=%v %q", tc.id, tc.need, e, tc.ok, tc.msg)
		}
	}
}

func TestFromKube(t *testing.T) {
	gr := schema.GroupResource{Group: "compute.strata.io", Resource: "virtualmachines"}
	for _, tc := range []struct {
		err  error
		code int
		name string
	}{
		{NotFound("no"), 404, "itemNotFound"},
		{apierrors.NewNotFound(gr, "x"), 404, "itemNotFound"},
		{apierrors.NewAlreadyExists(gr, "x"), 409, "conflictingRequest"},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "VirtualMachine"}, "x", nil), 400, "badRequest"},
		{apierrors.NewForbidden(gr, "x", errors.New("exceeded quota: q")), 403, "forbidden"},
		{apierrors.NewTooManyRequests("slow down", 1), 429, "overLimit"},
		{fmt.Errorf("wrapped: %w", Conflict("busy")), 409, "conflictingRequest"},
		{errors.New("boom"), 500, "computeFault"},
	} {
		e := FromKube(tc.err)
		if e.Code != tc.code || FaultName(e.Code) != tc.name {
			t.Errorf("%v: %d %s, want %d %s", tc.err, e.Code, FaultName(e.Code), tc.code, tc.name)
		}
	}
	if e := FromKube(apierrors.NewForbidden(gr, "x", errors.New("exceeded quota: q"))); !strings.HasPrefix(e.Message, "Quota exceeded: ") {
		t.Errorf("quota message %q", e.Message)
	}
}

func TestBody(t *testing.T) {
	req := func(body string) *http.Request { return httptest.NewRequest("POST", "/", strings.NewReader(body)) }
	var out struct{ Name string }
	for _, tc := range []struct{ body, msg string }{
		{`{"server": {"Name": "a"}}`, ""},
		{`{"other": {}}`, "'server' is a required property"},
		{`{"server": null}`, "'server' is a required property"},
		{`{"server": {"Name": 5}}`, "server: Name is not of type string"},
		{`not json`, "Malformed request body"},
		{`[]`, "Malformed request body"},
	} {
		err := Body(req(tc.body), "server", &out)
		if tc.msg == "" && err != nil || tc.msg != "" && (err == nil || FromKube(err).Code != 400 || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.msg)
		}
	}
	w := httptest.NewRecorder()
	WriteFault(w, NotFound("Instance %s could not be found.", "x"))
	if w.Code != 404 || !strings.Contains(w.Body.String(), `{"itemNotFound":{"code":404,"message":"Instance x could not be found."}}`) {
		t.Errorf("fault body %d %s", w.Code, w.Body)
	}
}

type projectNames map[string]string

func (p projectNames) ProjectID(_ context.Context, ns string) (string, error) {
	if id, ok := p[ns]; ok {
		return id, nil
	}
	return "", errors.New("no such project")
}

func TestProjectOfAndTruthy(t *testing.T) {
	me := auth.Identity{Namespace: "p1", ProjectID: "p1-id"}
	ps := projectNames{"p2": "p2-id"}
	for ns, want := range map[string]string{"p1": "p1-id", "p2": "p2-id", "p3": "p3"} {
		if got := ProjectOf(context.Background(), me, ps, ns); got != want {
			t.Errorf("ProjectOf(%s) = %s, want %s", ns, got, want)
		}
	}
	if got := ProjectOf(context.Background(), me, nil, "p2"); got != "p2" {
		t.Errorf("ProjectOf without a mapping = %s", got)
	}
	for s, want := range map[string]bool{"1": true, "True": true, " yes ": true, "on": true, "t": true, "y": true, "0": false, "false": false, "": false, "maybe": false} {
		if Truthy(s) != want {
			t.Errorf("Truthy(%q) != %v", s, want)
		}
	}
}
