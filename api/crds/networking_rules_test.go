package crds

import (
	"strings"
	"testing"
)

// TestNetworkingRules runs the networking kinds' CEL rules as the API
// server does (after defaulting, so defaulted fields are spelled out).
func TestNetworkingRules(t *testing.T) {
	type rule struct{ name, obj, old, want string }
	for crd, cases := range map[string][]rule{
		"subnets.networking.strata.io": {
			{"plain", `spec: {network: n, cidr: 10.0.0.0/24}`, "", ""},
			{"gateway and pools inside", `spec: {network: n, cidr: 10.0.0.0/24, gatewayIP: 10.0.0.254, allocationPools: [{start: 10.0.0.10, end: 10.0.0.20}]}`, "", ""},
			{"not a CIDR", `spec: {network: n, cidr: 10.0.0.0}`, "", "must be an IPv4 CIDR"},
			{"host bits set", `spec: {network: n, cidr: 10.0.0.1/24}`, "", "must be a network address"},
			{"too small", `spec: {network: n, cidr: 10.0.0.0/30}`, "", "must be /29 or larger"},
			{"gateway outside", `spec: {network: n, cidr: 10.0.0.0/24, gatewayIP: 10.0.1.1}`, "", "gatewayIP must be inside cidr"},
			{"pool outside", `spec: {network: n, cidr: 10.0.0.0/24, allocationPools: [{start: 10.0.0.10, end: 10.0.1.20}]}`, "", "allocationPools must be inside cidr"},
			{"gateway and none", `spec: {network: n, cidr: 10.0.0.0/24, gatewayIP: 10.0.0.1, noGateway: true}`, "", "exclude each other"},
			{"cidr changed", `spec: {network: n, cidr: 10.0.1.0/24}`, `spec: {network: n, cidr: 10.0.0.0/24}`, "network and cidr cannot change"},
		},
		"securitygroups.networking.strata.io": {
			{"http", `spec: {rules: [{direction: ingress, protocol: tcp, portRangeMin: 80, portRangeMax: 80}]}`, "", ""},
			{"any egress", `spec: {rules: [{direction: egress, protocol: any}]}`, "", ""},
			{"icmp echo", `spec: {rules: [{direction: ingress, protocol: icmp, portRangeMin: 8, portRangeMax: 0}]}`, "", ""},
			{"inverted range", `spec: {rules: [{direction: ingress, protocol: tcp, portRangeMin: 90, portRangeMax: 80}]}`, "", "portRangeMin <= portRangeMax"},
			{"port 0", `spec: {rules: [{direction: ingress, protocol: udp, portRangeMin: 0}]}`, "", "portRangeMin <= portRangeMax"},
			{"ports without protocol", `spec: {rules: [{direction: ingress, protocol: any, portRangeMin: 80}]}`, "", "port ranges need protocol"},
			{"max without min", `spec: {rules: [{direction: ingress, protocol: tcp, portRangeMax: 80}]}`, "", "portRangeMax needs portRangeMin"},
			{"icmp type too big", `spec: {rules: [{direction: ingress, protocol: icmp, portRangeMin: 300}]}`, "", "ICMP type"},
			{"two remotes", `spec: {rules: [{direction: ingress, protocol: any, remoteIPPrefix: 10.0.0.0/8, remoteGroup: g}]}`, "", "exclude each other"},
			{"bad prefix", `spec: {rules: [{direction: ingress, protocol: any, remoteIPPrefix: 10.0.0.0}]}`, "", "must be an IPv4 CIDR"},
		},
		"ports.networking.strata.io": {
			{"fixed IP", `spec: {network: n, fixedIPs: [{ipAddress: 10.0.0.5}]}`, "", ""},
			{"bad IP", `spec: {network: n, fixedIPs: [{ipAddress: 10.0.0.300}]}`, "", "must be an IPv4 address"},
			{"network changed", `spec: {network: m}`, `spec: {network: n}`, "network cannot change"},
			{"fixed IPs changed", `spec: {network: n, fixedIPs: [{ipAddress: 10.0.0.6}]}`, `spec: {network: n, fixedIPs: [{ipAddress: 10.0.0.5}]}`, "fixedIPs cannot change"},
		},
		"networks.networking.strata.io": {
			{"vxlan", `spec: {providerType: vxlan}`, "", ""},
			{"flat on eth1", `spec: {providerType: flat, external: true, physicalInterface: eth1}`, "", ""},
			{"interface on vxlan", `spec: {providerType: vxlan, physicalInterface: eth1}`, "", "physicalInterface is for flat networks only"},
			{"VNI changed", `spec: {providerType: vxlan, segmentationID: 7}`, `spec: {providerType: vxlan, segmentationID: 6}`, "segmentationID cannot change"},
		},
		"floatingips.networking.strata.io": {
			{"moves", `spec: {network: {namespace: ext, name: public}, port: b}`, `spec: {network: {namespace: ext, name: public}, port: a}`, ""},
			{"network changed", `spec: {network: {namespace: ext, name: other}}`, `spec: {network: {namespace: ext, name: public}}`, "network cannot change"},
		},
	} {
		v := celValidator(t, crd)
		for _, c := range cases {
			t.Run(crd+"/"+c.name, func(t *testing.T) {
				got := celErrors(t, v, c.obj, c.old)
				switch {
				case c.want == "" && got != "":
					t.Errorf("rejected: %s", got)
				case c.want != "" && !strings.Contains(got, c.want):
					t.Errorf("errors %q, want one containing %q", got, c.want)
				}
			})
		}
	}
}
