package router

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

func toUnstructured(t *testing.T, kind string, obj any) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(netv1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

// TestRunFollowsTheCluster runs the node loop against a fake API: it
// realises the router named for this node, adds a floating IP when one
// appears, and tears the router down when it moves to another node.
func TestRunFollowsTheCluster(t *testing.T) {
	l := newLab(t)
	inst1 := l.instance(t, "inst1", "10.0.0.5/24")
	serve(t, l.external, "203.0.113.1:8080", "ext")
	serve(t, inst1, ":8080", "inst1")

	in := objects()
	in.ExternalSubnets[0].Spec.GatewayIP = "203.0.113.1"
	objs := []runtime.Object{
		toUnstructured(t, "Router", in.Router),
		toUnstructured(t, "Subnet", in.Subnets["sn"]),
		toUnstructured(t, "Network", in.Networks["net"]),
		toUnstructured(t, "Network", in.ExternalNetwork),
		toUnstructured(t, "Subnet", in.ExternalSubnets[0]),
	}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		routersGVR: "RouterList", floatingIPsGVR: "FloatingIPList", subnetsGVR: "SubnetList", networksGVR: "NetworkList",
	}, objs...)

	// Another node's router, in the same directory (test nodes share
	// the file system): Run must leave it alone.
	other := objects()
	other.Router.UID = "77770000-0000-4000-8000-000000000009"
	other.Router.Spec.ExternalGateway, other.Router.Status.Interfaces = nil, nil
	foreign, _ := Desired(other)
	if err := (&Node{Host: l.hn, NetNSDir: l.n.NetNSDir, Owner: "n9"}).Ensure(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{NodeName: "n1", Dynamic: client, Host: l.hn, NetNSDir: l.n.NetNSDir})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	eventually(t, func() bool {
		got, err := call(inst1, "203.0.113.1:8080")
		return err == nil && got == "ext 203.0.113.10"
	})

	f := fip("f1", "203.0.113.50", "10.0.0.5")
	f.Spec.Network = netv1.NetworkRef{Namespace: "admin", Name: "public"}
	if _, err := client.Resource(floatingIPsGVR).Namespace("p").Create(ctx, toUnstructured(t, "FloatingIP", f), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		got, err := call(l.external, "203.0.113.50:8080")
		return err == nil && got == "inst1 203.0.113.1"
	})

	in.Router.Status.NodeName = "n2"
	if _, err := client.Resource(routersGVR).Namespace("p").Update(ctx, toUnstructured(t, "Router", in.Router), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(l.n.NetNSDir, NamespaceName(string(in.Router.UID)))
	eventually(t, func() bool { _, err := os.Stat(path); return errors.Is(err, os.ErrNotExist) })
	if _, err := os.Stat(filepath.Join(l.n.NetNSDir, foreign.Namespace)); err != nil {
		t.Fatalf("another node's router was removed: %v", err)
	}
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
