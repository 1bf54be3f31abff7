package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		DataDir: "/tmp/x", BindAddress: "127.0.0.1", APIPort: 6443, RegistryPort: 5000,
		EtcdClientPort: 2379, EtcdPeerPort: 2380,
		ClusterCIDR: DefaultClusterCIDR, ServiceCIDR: DefaultServiceCIDR,
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "--data-dir"},
		{"port zero", func(c *Config) { c.APIPort = 0 }, "--api-port: 0"},
		{"port too big", func(c *Config) { c.APIPort = 70000 }, "--api-port: 70000"},
		{"registry port zero", func(c *Config) { c.RegistryPort = 0 }, "--registry-port: 0"},
		{"registry port is the api port", func(c *Config) { c.RegistryPort = 6443 }, "--registry-port: 6443 is also --api-port"},
		{"bad bind", func(c *Config) { c.BindAddress = "nope" }, `--bind-address: "nope"`},
		{"bad cluster cidr", func(c *Config) { c.ClusterCIDR = "10.0.0.0" }, "--cluster-cidr"},
		{"bad service cidr", func(c *Config) { c.ServiceCIDR = "x" }, "--service-cidr"},
		{"bad etcd port", func(c *Config) { c.EtcdPeerPort = -1 }, "--etcd-peer-port"},
		{"external etcd ignores ports", func(c *Config) { c.EtcdServers = []string{"https://10.0.0.1:2379"}; c.EtcdPeerPort = 0 }, ""},
		{"bad etcd url", func(c *Config) { c.EtcdServers = []string{"10.0.0.1:2379"} }, "--etcd-servers"},
		{"missing etcd ca", func(c *Config) {
			c.EtcdServers = []string{"https://10.0.0.1:2379"}
			c.EtcdCAFile = "/nonexistent/ca.crt"
		}, "--etcd-cafile"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOpenDataDir(t *testing.T) {
	t.Run("new dir is created, marked and locked", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "data")
		d, err := openDataDir(dir, "v1")
		if err != nil {
			t.Fatal(err)
		}
		if !d.fresh {
			t.Fatal("new dir not fresh")
		}
		if _, err := openDataDir(dir, "v1"); err == nil || !strings.Contains(err.Error(), "in use by another strata process") {
			t.Fatalf("second open while locked: %v", err)
		}
		d.close()
		d2, err := openDataDir(dir, "v1")
		if err != nil {
			t.Fatalf("reopen after close: %v", err)
		}
		defer d2.close()
		if d2.fresh {
			t.Fatal("existing dir reported fresh")
		}
	})
	t.Run("foreign non-empty dir is refused untouched", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "precious.txt"), []byte("x"), 0o600)
		if _, err := openDataDir(dir, "v1"); err == nil || !strings.Contains(err.Error(), "not a Strata data dir") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, markerFile)); !os.IsNotExist(err) {
			t.Fatal("marker written into a foreign dir")
		}
	})
	t.Run("corrupt marker is refused", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, markerFile), []byte("{"), 0o600)
		if _, err := openDataDir(dir, "v1"); err == nil || !strings.Contains(err.Error(), "corrupt marker") {
			t.Fatalf("got %v", err)
		}
	})
}

func TestAddresses(t *testing.T) {
	if got := firstServiceIP("10.43.0.0/16").String(); got != "10.43.0.1" {
		t.Errorf("firstServiceIP = %s", got)
	}
	for bind, want := range map[string]string{"0.0.0.0": "127.0.0.1", "::": "::1", "127.0.0.1": "127.0.0.1", "192.0.2.7": "192.0.2.7"} {
		if got := loopbackFor(bind); got != want {
			t.Errorf("loopbackFor(%s) = %s, want %s", bind, got, want)
		}
	}
	hosts, advertise := apiHosts(validConfig())
	if advertise != nil && advertise.IsLoopback() {
		t.Errorf("advertised a loopback address %s", advertise)
	}
	if !strings.Contains(strings.Join(hosts.DNSNames, ","), "kubernetes.default.svc.cluster.local") {
		t.Errorf("SANs lack the service name: %v", hosts.DNSNames)
	}
}
