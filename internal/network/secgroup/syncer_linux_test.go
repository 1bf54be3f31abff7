package secgroup

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	netv1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/netnstest"
)

// TestRunFollowsChanges runs the node loop against a fake API and a throw-away namespace: it
// installs the table once the caches sync, and again after a rule, a port and a network change.
func TestRunFollowsChanges(t *testing.T) {
	netnstest.RequireRoot(t)
	nodeNS := netnstest.New(t)
	client := fakeClient(t,
		&netv1.Network{ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "net1"},
			Spec: netv1.NetworkSpec{ProviderType: netv1.ProviderVXLAN}, Status: netv1.NetworkStatus{SegmentationID: 100}},
		port("web", "net1", "10.0.0.10", "02:00:00:00:01:10", node, groups("web")),
		group("web", ingress("tcp", i32(80), nil)),
	)
	texts := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{NodeName: node, Client: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			NFT:     []nftables.ConnOption{nftables.WithNetNSFd(int(nodeNS.Fd()))},
			Applied: func(text string, _ time.Duration) { texts <- text }})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	next := func(want string) {
		t.Helper()
		select {
		case text := <-texts:
			if !strings.Contains(text, want) {
				t.Fatalf("applied ruleset lacks %q:\n%s", want, text)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing applied; waiting for %q", want)
		}
	}
	next(`02:00:00:00:01:10 . "tnbr-000064" : jump ingress-0`)

	ctx2 := context.Background()
	g := group("web", ingress("tcp", i32(443), nil))
	if _, err := client.Resource(securityGroups).Namespace("prod").Update(ctx2, unstruct(t, g), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	next("th dport 443 return")
	p := port("db", "net1", "10.0.0.11", "02:00:00:00:01:11", node)
	if _, err := client.Resource(ports).Namespace("prod").Create(ctx2, unstruct(t, p), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	next(`02:00:00:00:01:11 . "tnbr-000064" : jump ingress-1`)

	conn, err := nftables.New(nftables.WithNetNSFd(int(nodeNS.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ListTableOfFamily(TableName, nftables.TableFamilyINet); err != nil {
		t.Errorf("table %s not installed: %v", TableName, err)
	}
}

// fakeClient is a fake dynamic client that serves the networking kinds with objs in it.
func fakeClient(t testing.TB, objs ...runtime.Object) *dynamicfake.FakeDynamicClient {
	t.Helper()
	scheme := runtime.NewScheme() // empty: the fake serves unstructured objects only
	var us []runtime.Object
	for _, o := range objs {
		us = append(us, unstruct(t, o))
	}
	return dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		securityGroups: "SecurityGroupList", ports: "PortList", networks: "NetworkList",
	}, us...)
}

func unstruct(t testing.TB, o runtime.Object) *unstructured.Unstructured {
	t.Helper()
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	kind := map[string]string{"*v1alpha1.SecurityGroup": "SecurityGroup", "*v1alpha1.Port": "Port", "*v1alpha1.Network": "Network"}[fmt.Sprintf("%T", o)]
	u.SetGroupVersionKind(netv1.GroupVersion.WithKind(kind))
	return u
}
