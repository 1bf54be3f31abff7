package cni

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/strata-cloud/strata/internal/network/bridge"
)

func TestParseConfig(t *testing.T) {
	base := `"cniVersion":"1.0.0","name":"strata","type":"strata-cni","ipamDir":"/x"`
	tests := []struct {
		name string
		json string
		want Config
		err  string
	}{
		{
			name: "defaults",
			json: `{` + base + `,"podCIDR":"10.42.3.0/24","clusterCIDR":"10.42.0.0/16"}`,
			want: Config{Name: "strata", Bridge: "strata0", PodCIDR: netip.MustParsePrefix("10.42.3.0/24"),
				ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), MTU: 1450, Hairpin: true, IPAMDir: "/x"},
		},
		{
			name: "explicit",
			json: `{` + base + `,"bridge":"br9","podCIDR":"10.42.3.9/24","clusterCIDR":"10.42.0.0/16","mtu":9000,"hairpinMode":false}`,
			want: Config{Name: "strata", Bridge: "br9", PodCIDR: netip.MustParsePrefix("10.42.3.0/24"),
				ClusterCIDR: netip.MustParsePrefix("10.42.0.0/16"), MTU: 9000, Hairpin: false, IPAMDir: "/x"},
		},
		{name: "pod cidr outside cluster", json: `{` + base + `,"podCIDR":"10.43.3.0/24","clusterCIDR":"10.42.0.0/16"}`, err: "not inside"},
		{name: "pod cidr bigger than cluster", json: `{` + base + `,"podCIDR":"10.0.0.0/8","clusterCIDR":"10.42.0.0/16"}`, err: "not inside"},
		{name: "no ipam dir", json: `{"name":"n","podCIDR":"10.42.3.0/24","clusterCIDR":"10.42.0.0/16"}`, err: "ipamDir"},
		{name: "bad cidr", json: `{` + base + `,"podCIDR":"10.42.3.0","clusterCIDR":"10.42.0.0/16"}`, err: "podCIDR"},
		{name: "ipv6", json: `{` + base + `,"podCIDR":"fd00::/64","clusterCIDR":"fd00::/48"}`, err: "IPv4"},
		{name: "long bridge", json: `{` + base + `,"bridge":"abcdefghijklmnop","podCIDR":"10.42.3.0/24","clusterCIDR":"10.42.0.0/16"}`, err: "15 bytes"},
		{name: "not json", json: `{`, err: "decode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := ParseConfig([]byte(tt.json))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestConfListRoundTrip(t *testing.T) {
	b, err := ConfList("strata", NetConf{PodCIDR: "10.42.3.0/24", ClusterCIDR: "10.42.0.0/16", IPAMDir: "/var/lib/strata/ipam"})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	if list.Name != "strata" || list.CNIVersion != DefaultCNIVersion || len(list.Plugins) != 1 {
		t.Fatalf("bad list: %s", b)
	}
	// the runtime injects name and cniVersion into each plugin's config
	var m map[string]any
	_ = json.Unmarshal(list.Plugins[0], &m)
	m["name"], m["cniVersion"] = list.Name, list.CNIVersion
	plugin, _ := json.Marshal(m)
	nc, c, err := ParseConfig(plugin)
	if err != nil {
		t.Fatal(err)
	}
	if nc.Type != PluginType || c.Bridge != DefaultBridge || c.PodCIDR.String() != "10.42.3.0/24" {
		t.Fatalf("got %+v %+v from %s", nc, c, b)
	}
	if _, err := ConfList("strata", NetConf{PodCIDR: "bad"}); err == nil {
		t.Fatal("invalid config rendered")
	}
}

func TestParseCNIArgs(t *testing.T) {
	tests := []struct {
		args string
		want PodRef
		err  bool
	}{
		{args: "", want: PodRef{}},
		{args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1",
			want: PodRef{Namespace: "default", Name: "web-0", UID: "u-1"}},
		{args: "K8S_POD_NAME=a=b", want: PodRef{Name: "a=b"}},
		{args: "K8S_POD_NAME", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.args, func(t *testing.T) {
			got, err := ParseCNIArgs(tt.args)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if !tt.err && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestAttachmentNormalize(t *testing.T) {
	sub := netip.MustParsePrefix("10.42.3.0/24")
	tests := []struct {
		name   string
		in     NetworkAttachment
		wantGW string
		err    bool
	}{
		{name: "default gateway", in: NetworkAttachment{Network: "pod", Bridge: "b", Subnet: sub}, wantGW: "10.42.3.1"},
		{name: "explicit gateway", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Gateway: netip.MustParseAddr("10.42.3.254")}, wantGW: "10.42.3.254"},
		{name: "gateway outside", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Gateway: netip.MustParseAddr("10.0.0.1")}, err: true},
		{name: "fixed ip is gateway", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, IP: netip.MustParseAddr("10.42.3.1")}, err: true},
		{name: "no subnet", in: NetworkAttachment{Network: "t", Bridge: "b"}, err: true},
		{name: "no network", in: NetworkAttachment{Bridge: "b", Subnet: sub}, err: true},
		{name: "network is a path", in: NetworkAttachment{Network: "../x", Bridge: "b", Subnet: sub}, err: true},
		{name: "tenant without gateway keeps none", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Tenant: true, IP: netip.MustParseAddr("10.42.3.1")}, wantGW: "invalid IP"},
		{name: "tenant with gateway", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Tenant: true, IP: netip.MustParseAddr("10.42.3.9"), Gateway: netip.MustParseAddr("10.42.3.1")}, wantGW: "10.42.3.1"},
		{name: "tenant without address", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Tenant: true}, err: true},
		{name: "tenant address outside", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Tenant: true, IP: netip.MustParseAddr("10.0.0.9")}, err: true},
		{name: "route via off-link hop", in: NetworkAttachment{Network: "t", Bridge: "b", Subnet: sub, Tenant: true, IP: netip.MustParseAddr("10.42.3.9"),
			Routes: []Route{{Dst: netip.MustParsePrefix("10.9.0.0/16"), Via: netip.MustParseAddr("10.0.0.1")}}}, err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.normalize()
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if !tt.err && got.Gateway.String() != tt.wantGW {
				t.Fatalf("gateway %s, want %s", got.Gateway, tt.wantGW)
			}
		})
	}
}

func TestPodNetworkIsDefault(t *testing.T) {
	def := Config{Bridge: "strata0", PodCIDR: netip.MustParsePrefix("10.42.3.0/24"), MTU: 1450, Hairpin: true}.podNetwork()
	got, err := PodNetwork{}.Resolve(context.Background(), PodRef{Namespace: "a", Name: "b"}, def)
	if err != nil || got.Network != PodNetworkName || got.Bridge != "strata0" || got.Port != "" {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestExpectedFromResult(t *testing.T) {
	idx := 2
	r := &current.Result{
		Interfaces: []*current.Interface{{Name: "strata0"}, {Name: "stv1"}, {Name: "eth0", Sandbox: "/x"}},
		IPs: []*current.IPConfig{{Interface: &idx, Address: net.IPNet{IP: net.ParseIP("10.42.3.7"), Mask: net.CIDRMask(24, 32)},
			Gateway: net.ParseIP("10.42.3.1")}},
	}
	e, err := expectedFromResult(r, "eth0")
	if err != nil || e.bridge != "strata0" || e.addr.String() != "10.42.3.7/24" || e.gw.String() != "10.42.3.1" {
		t.Fatalf("got %+v, %v", e, err)
	}
	if _, err := expectedFromResult(r, "net1"); err == nil {
		t.Fatal("want error for an interface without address")
	}
}

func TestHostVethName(t *testing.T) {
	a := bridge.HostVethName("0123456789abcdef", "eth0")
	if len(a) > 15 || !strings.HasPrefix(a, "stv") || a != bridge.HostVethName("0123456789abcdef", "eth0") ||
		a == bridge.HostVethName("0123456789abcdef", "net1") {
		t.Fatalf("bad name %q", a)
	}
}

func TestRuntimeConfigAnnotations(t *testing.T) {
	in := `{"cniVersion":"1.0.0","name":"strata","type":"strata-cni","podCIDR":"10.42.3.0/24","clusterCIDR":"10.42.0.0/16","ipamDir":"/x",` +
		`"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"networking.strata.io/ip":"10.42.3.57","networking.strata.io/mac":"52:54:00:00:00:01"}}}`
	_, c, err := ParseConfig([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	att, err := c.podNetwork().normalize()
	if err != nil {
		t.Fatal(err)
	}
	want, err := requested(&att, c.Annotations)
	if err != nil || want.String() != "10.42.3.57" || att.MAC.String() != "52:54:00:00:00:01" {
		t.Errorf("requested = %s, MAC %s, %v", want, att.MAC, err)
	}
	for _, bad := range []map[string]string{{AnnotationIP: "nope"}, {AnnotationIP: "10.42.3.1"}, {AnnotationMAC: "01:00:5e:00:00:01"}, {AnnotationMAC: "x"}} {
		a := att
		a.MAC = nil
		if _, err := requested(&a, bad); err == nil {
			t.Errorf("annotations %v accepted", bad)
		}
	}
	b, err := ConfList("strata", NetConf{PodCIDR: "10.42.3.0/24", ClusterCIDR: "10.42.0.0/16", IPAMDir: "/x"})
	if err != nil || !strings.Contains(string(b), `"io.kubernetes.cri.pod-annotations": true`) {
		t.Errorf("conflist does not ask for the pod annotations (%v):\n%s", err, b)
	}
}
