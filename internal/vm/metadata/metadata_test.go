package metadata

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

const (
	guest = "10.42.0.57"
	key0  = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample alice@laptop"
	key1  = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQExample bob"
)

func testInstance() Instance {
	return Instance{
		UUID: "6f1c2a4e-0b7d-4a39-9d51-2f7f0a1b2c3d", Name: "web1",
		PublicKeys: []string{key0, key1}, UserData: []byte("#!/bin/sh\necho hi\n"),
		GuestAddr: netip.MustParseAddr(guest), MAC: "52:54:00:12:34:56", MTU: 1450,
		DNS: []netip.Addr{netip.MustParseAddr("10.43.0.10")},
	}
}

func newHandler(t *testing.T, inst Instance) *Handler {
	t.Helper()
	h, err := NewHandler(inst, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// get asks h for path as the guest (or from src when given).
func get(h http.Handler, method, path, src string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "http://169.254.169.254"+path, nil)
	r.RemoteAddr = src + ":40000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestPaths(t *testing.T) {
	h := newHandler(t, testInstance())
	for _, c := range []struct{ path, want string }{
		{"/openstack", strings.Join(OpenStackVersions, "\n") + "\nlatest"},
		{"/openstack/", strings.Join(OpenStackVersions, "\n") + "\nlatest"},
		{"/openstack/latest", "meta_data.json\nuser_data\nnetwork_data.json"},
		{"/openstack/latest/user_data", "#!/bin/sh\necho hi\n"},
		{"/openstack/2018-08-27/user_data", "#!/bin/sh\necho hi\n"},
		{"/", strings.Join(EC2Versions, "\n") + "\nlatest"},
		{"/latest/", "meta-data/\nuser-data"},
		{"/latest/meta-data/", "ami-launch-index\nhostname\ninstance-id\nlocal-hostname\nlocal-ipv4\nmac\nplacement/\npublic-keys/"},
		{"/latest/meta-data/instance-id", "6f1c2a4e-0b7d-4a39-9d51-2f7f0a1b2c3d"},
		{"/2009-04-04/meta-data/instance-id", "6f1c2a4e-0b7d-4a39-9d51-2f7f0a1b2c3d"},
		{"/latest/meta-data/hostname", "web1"},
		{"/latest/meta-data/local-hostname", "web1"},
		{"/latest/meta-data/local-ipv4", guest},
		{"/latest/meta-data/mac", "52:54:00:12:34:56"},
		{"/latest/meta-data/ami-launch-index", "0"},
		{"/latest/meta-data/placement/availability-zone", "nova"},
		{"/latest/meta-data/public-keys", "0=key-0\n1=key-1"},
		{"/latest/meta-data/public-keys/1/", "openssh-key"},
		{"/latest/meta-data/public-keys/0/openssh-key", key0 + "\n"},
		{"/latest/meta-data/public-keys/1/openssh-key", key1 + "\n"},
		{"/latest/user-data", "#!/bin/sh\necho hi\n"},
	} {
		w := get(h, http.MethodGet, c.path, guest)
		if w.Code != http.StatusOK || w.Body.String() != c.want {
			t.Errorf("GET %s = %d %q, want 200 %q", c.path, w.Code, w.Body.String(), c.want)
		}
	}
}

func TestOpenStackJSON(t *testing.T) {
	inst := testInstance()
	inst.ProjectID = "p-123"
	h := newHandler(t, inst)
	w := get(h, http.MethodGet, "/openstack/latest/meta_data.json", guest)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("meta_data.json: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	var meta map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &meta); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"uuid": inst.UUID, "name": "web1", "hostname": "web1", "launch_index": 0.0,
		"availability_zone": "nova", "project_id": "p-123",
	} {
		if meta[k] != want {
			t.Errorf("meta_data.json %s = %#v, want %#v", k, meta[k], want)
		}
	}
	keys, _ := meta["public_keys"].(map[string]any)
	if keys["key-0"] != key0 || keys["key-1"] != key1 || len(keys) != 2 {
		t.Errorf("meta_data.json public_keys = %#v", meta["public_keys"])
	}
	if list, _ := meta["keys"].([]any); len(list) != 2 {
		t.Errorf("meta_data.json keys = %#v", meta["keys"])
	}

	w = get(h, http.MethodGet, "/openstack/latest/network_data.json", guest)
	var nd networkData
	if err := json.Unmarshal(w.Body.Bytes(), &nd); err != nil || w.Code != http.StatusOK {
		t.Fatalf("network_data.json: %d %v", w.Code, err)
	}
	if len(nd.Links) != 1 || nd.Links[0].MAC != inst.MAC || nd.Links[0].MTU != 1450 ||
		len(nd.Networks) != 1 || nd.Networks[0].Type != "ipv4_dhcp" || nd.Networks[0].Link != nd.Links[0].ID ||
		len(nd.Services) != 1 || nd.Services[0].Address != "10.43.0.10" {
		t.Errorf("network_data.json = %s", w.Body)
	}
}

func TestMinimalInstance(t *testing.T) {
	// No keys, no user data, no project: left out, not empty.
	h := newHandler(t, Instance{UUID: "u1", Name: "vm", GuestAddr: netip.MustParseAddr(guest)})
	for _, p := range []string{"/openstack/latest/user_data", "/latest/user-data", "/latest/meta-data/public-keys/", "/latest/meta-data/mac"} {
		if w := get(h, http.MethodGet, p, guest); w.Code != http.StatusNotFound {
			t.Errorf("GET %s without it = %d, want 404", p, w.Code)
		}
	}
	if w := get(h, http.MethodGet, "/latest/meta-data/hostname", guest); w.Body.String() != "vm" {
		t.Errorf("hostname defaults to %q, want the name", w.Body)
	}
	w := get(h, http.MethodGet, "/openstack/latest/meta_data.json", guest)
	if s := w.Body.String(); strings.Contains(s, "project_id") || strings.Contains(s, "public_keys") {
		t.Errorf("meta_data.json with nothing to say about them = %s", s)
	}
	if _, err := NewHandler(Instance{GuestAddr: netip.MustParseAddr(guest)}, nil); err == nil {
		t.Error("an instance without ID accepted")
	}
	if _, err := NewHandler(Instance{UUID: "u1"}, nil); err == nil {
		t.Error("an instance without guest address accepted")
	}
}

func TestRefusals(t *testing.T) {
	h := newHandler(t, testInstance())
	for _, c := range []struct {
		method, path, src string
		want              int
	}{
		{http.MethodGet, "/latest/meta-data/instance-id", "10.42.0.58", http.StatusForbidden},
		{http.MethodGet, "/latest/meta-data/instance-id", "169.254.75.10", http.StatusForbidden},
		{http.MethodPost, "/latest/meta-data/instance-id", guest, http.StatusMethodNotAllowed},
		{http.MethodPut, "/openstack/latest/meta_data.json", guest, http.StatusMethodNotAllowed},
		{http.MethodDelete, "/", guest, http.StatusMethodNotAllowed},
		{http.MethodGet, "/latest/meta-data/nothing", guest, http.StatusNotFound},
		{http.MethodGet, "/latest/meta-data/instance-id/more", guest, http.StatusNotFound},
		{http.MethodGet, "/openstack/2099-01-01/meta_data.json", guest, http.StatusNotFound},
		{http.MethodGet, "/2099-01-01/meta-data/", guest, http.StatusNotFound},
		{http.MethodGet, "/latest/meta-data/public-keys/2/openssh-key", guest, http.StatusNotFound},
	} {
		if w := get(h, c.method, c.path, c.src); w.Code != c.want {
			t.Errorf("%s %s from %s = %d, want %d", c.method, c.path, c.src, w.Code, c.want)
		}
	}
	if w := get(h, http.MethodPost, "/", guest); w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("405 without Allow: %v", w.Header())
	}
	w := get(h, http.MethodHead, "/latest/meta-data/hostname", guest)
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Content-Length") != "4" {
		t.Errorf("HEAD = %d %q %v", w.Code, w.Body, w.Header())
	}
}

// TestServe runs the server on loopback, the guest being 127.0.0.1.
func TestServe(t *testing.T) {
	inst := testInstance()
	inst.GuestAddr = netip.MustParseAddr("127.0.0.1")
	h := newHandler(t, inst)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, h) }()
	resp, err := http.Get("http://" + l.Addr().String() + "/latest/meta-data/instance-id")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != inst.UUID {
		t.Errorf("instance-id over TCP = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}
