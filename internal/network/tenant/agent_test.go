package tenant

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	kubefake "k8s.io/client-go/kubernetes/fake"

	v1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	"github.com/strata-cloud/strata/internal/network/cni"
)

type fakeSegments struct {
	mu   sync.Mutex
	last State
}

func (f *fakeSegments) Sync(_ context.Context, st State) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = st
	return nil
}

func (f *fakeSegments) state() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func toUnstructured(t *testing.T, obj runtime.Object, kind string) *unstructured.Unstructured {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		t.Fatal(err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(v1.GroupVersion.String())
	u.SetKind(kind)
	return u
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAgent runs the agent against fake API clients: the file appears once the Port is ready,
// the Port is bound when the pod runs, and both are undone when the pod goes.
func TestAgent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pod := mkPod("p1", "web", byNetwork("net"), corev1.PodRunning)
	kube := kubefake.NewClientset(mkNode(self, "192.168.1.1", false), mkNode("node-b", "192.168.1.2", false), pod)
	scheme := runtime.NewScheme()
	lists := map[schema.GroupVersionResource]string{networksGVR: "NetworkList", subnetsGVR: "SubnetList", portsGVR: "PortList", routersGVR: "RouterList"}
	port := mkPort("p1", "web", "net", "", "")
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, lists,
		toUnstructured(t, mkNetwork("p1", "net", 100), "Network"),
		toUnstructured(t, mkSubnet("p1", "sn", "net", "10.0.0.0/24", "10.0.0.1"), "Subnet"),
		toUnstructured(t, port, "Port"))
	dir := t.TempDir()
	segs := &fakeSegments{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, Config{NodeName: self, NodeIP: selfIP, Client: kube, Dynamic: dyn, AttachmentDir: dir, Resync: 100 * time.Millisecond}, segs)
	}()

	eventually(t, "the segment", func() bool { st := segs.state(); return len(st.Segments) == 1 && len(st.Peers) == 1 })
	if _, err := os.Stat(cni.TenantAttachmentPath(dir, "p1", "web")); !os.IsNotExist(err) {
		t.Fatalf("file before the port has an address: %v", err)
	}
	// a stale file of a pod long gone
	if err := os.WriteFile(cni.TenantAttachmentPath(dir, "p1", "gone"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	port.Status.FixedIPs = []v1.FixedIP{{IPAddress: "10.0.0.5"}}
	port.Status.MACAddress = "fa:16:3e:00:00:05"
	ports := dyn.Resource(portsGVR).Namespace("p1")
	if _, err := ports.UpdateStatus(ctx, toUnstructured(t, port, "Port"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the attachment file", func() bool {
		a, err := cni.ReadTenantAttachment(dir, "p1", "web")
		return err == nil && a.Address.String() == "10.0.0.5/24" && a.Bridge == BridgeName(100)
	})
	portStatus := func() v1.PortStatus {
		u, err := ports.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var p v1.Port
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p)
		return p.Status
	}
	eventually(t, "the port bound", func() bool {
		st := portStatus()
		return st.NodeName == self && st.Status == v1.StatusActive && st.MACAddress == "fa:16:3e:00:00:05"
	})
	if _, err := os.Stat(cni.TenantAttachmentPath(dir, "p1", "gone")); !os.IsNotExist(err) {
		t.Fatalf("stale file kept: %v", err)
	}

	if err := kube.CoreV1().Pods("p1").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file removed and the port down", func() bool {
		_, err := os.Stat(cni.TenantAttachmentPath(dir, "p1", "web"))
		st := portStatus()
		return os.IsNotExist(err) && st.NodeName == "" && st.Status == v1.StatusDown && len(segs.state().Segments) == 0
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
