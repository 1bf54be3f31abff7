package tenant

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
	"github.com/strata-cloud/strata/internal/network/netnstest"
)

// cniAdd runs the CNI plugin's ADD on node n for a pod annotated for a tenant network, as the
// runtime would, with the node's attachment dir in the config.
func cniAdd(t *testing.T, n *labNode, dir, podName string, pod ns.NetNS) {
	t.Helper()
	conf, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "strata", "type": cni.PluginType, "podCIDR": "10.42.1.0/24", "clusterCIDR": "10.42.0.0/16",
		"ipamDir": t.TempDir(), "tenantAttachmentDir": dir,
		"runtimeConfig": map[string]any{cni.PodAnnotationsCapability: map[string]string{v1.AnnotationNetwork: "net"}},
	})
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c-" + podName, "CNI_NETNS": pod.Path(), "CNI_IFNAME": "eth0",
		"CNI_ARGS": "K8S_POD_NAMESPACE=p1;K8S_POD_NAME=" + podName}
	var out, stderr bytes.Buffer
	if err := (&cni.Plugin{HostNS: n.ns}).Main(context.Background(), bytes.NewReader(conf), func(k string) string { return env[k] }, &out, &stderr); err != nil {
		t.Fatalf("ADD %s: %v %s %s", podName, err, out.String(), stderr.String())
	}
}

// TestPlanSegmentsAndCNI goes the whole node path on two nodes: plans from API objects, the
// segments they ask for, the attachment files, and the CNI plugin attaching pods from them;
// the pods then talk across the nodes over their tenant network.
func TestPlanSegmentsAndCNI(t *testing.T) {
	ctx := context.Background()
	a, b := twoNodes(t)
	netA := mkNetwork("p1", "net", 0x4242)
	sn := mkSubnet("p1", "sn", "net", "10.0.0.0/24", "10.0.0.1")
	objs := func(node string, ip netip.Addr, pod, portIP, mac string) Objects {
		p := mkPod("p1", pod, byNetwork("net"), corev1.PodPending)
		p.Spec.NodeName = node
		return Objects{Node: node, NodeIP: ip, Pods: []*corev1.Pod{p}, Nodes: []*corev1.Node{mkNode("a", a.ip.String(), false), mkNode("b", b.ip.String(), false)},
			Networks: []*v1.Network{netA}, Subnets: []*v1.Subnet{sn}, Ports: []*v1.Port{mkPort("p1", pod, "net", portIP, mac)}}
	}
	pods := map[string]ns.NetNS{}
	for _, c := range []struct {
		n             *labNode
		node, pod, ip string
	}{{a, "a", "web", "10.0.0.5"}, {b, "b", "db", "10.0.0.6"}} {
		plan := MakePlan(objs(c.node, c.n.ip, c.pod, c.ip, fmt.Sprintf("fa:16:3e:00:00:%02x", len(pods)+1)))
		if len(plan.Attachments) != 1 || len(plan.State.Peers) != 1 {
			t.Fatalf("plan %+v", plan)
		}
		if err := c.n.segs.Sync(ctx, plan.State); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := cni.WriteTenantAttachment(dir, plan.Attachments[0]); err != nil {
			t.Fatal(err)
		}
		pods[c.pod] = netnstest.New(t)
		cniAdd(t, c.n, dir, c.pod, pods[c.pod])
	}
	if !reach(t, pods["db"], pods["web"], "10.0.0.6:7000") {
		t.Fatal("pods of one tenant network on two nodes cannot talk")
	}
}
