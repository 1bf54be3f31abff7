package loadbalancer

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/strata-cloud/strata/internal/network/lb"
)

var created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func service(name string, age int, typ corev1.ServiceType, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(created.Add(time.Duration(age) * time.Minute))},
		Spec:       corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80}}},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

type fixture struct {
	t      *testing.T
	c      client.Client
	r      *Reconciler
	events *events.FakeRecorder
}

func newFixture(t *testing.T, pool string, objs ...client.Object) *fixture {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	p, err := lb.ParsePool(pool)
	if err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&corev1.Service{}).Build()
	rec := events.NewFakeRecorder(100)
	return &fixture{t: t, c: c, r: &Reconciler{Client: c, Pool: p, Recorder: rec}, events: rec}
}

func (f *fixture) reconcile(name string) *corev1.Service {
	f.t.Helper()
	key := types.NamespacedName{Namespace: "ns", Name: name}
	if _, err := f.r.Reconcile(context.Background(), ctrl.Request{NamespacedName: key}); err != nil {
		f.t.Fatalf("reconcile %s: %v", name, err)
	}
	svc := &corev1.Service{}
	if err := f.c.Get(context.Background(), key, svc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		f.t.Fatal(err)
	}
	return svc
}

func ingressIP(svc *corev1.Service) string {
	if len(svc.Status.LoadBalancer.Ingress) != 1 {
		return ""
	}
	return svc.Status.LoadBalancer.Ingress[0].IP
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestAllocatesDistinctAddresses(t *testing.T) {
	f := newFixture(t, "10.99.0.200-10.99.0.201",
		service("a", 0, corev1.ServiceTypeLoadBalancer),
		service("b", 1, corev1.ServiceTypeLoadBalancer),
		service("c", 2, corev1.ServiceTypeLoadBalancer),
		service("plain", 0, corev1.ServiceTypeClusterIP),
		service("foreign", 0, corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.LoadBalancerClass = ptr.To("example.com/lb") }),
	)
	a, b := f.reconcile("a"), f.reconcile("b")
	if ingressIP(a) != "10.99.0.200" || ingressIP(b) != "10.99.0.201" {
		t.Fatalf("a = %q, b = %q; want 10.99.0.200 and 10.99.0.201", ingressIP(a), ingressIP(b))
	}
	if m := a.Status.LoadBalancer.Ingress[0].IPMode; m == nil || *m != corev1.LoadBalancerIPModeVIP {
		t.Errorf("ipMode %v, want VIP", m)
	}
	if ev := f.drainEvents(); len(ev) != 2 || !strings.Contains(ev[0], "IPAllocated") {
		t.Errorf("events %q, want two IPAllocated", ev)
	}
	// The pool is empty now: c stays pending, with one event saying why.
	for range 3 {
		if c := f.reconcile("c"); ingressIP(c) != "" {
			t.Fatalf("c got %s from an exhausted pool", ingressIP(c))
		}
	}
	ev := f.drainEvents()
	if len(ev) != 1 || !strings.Contains(ev[0], "Warning AllocationFailed no free address in the pool 10.99.0.200-10.99.0.201") {
		t.Errorf("events %q, want one AllocationFailed", ev)
	}
	if pending := f.r.pendingRequests(); len(pending) != 1 || pending[0].Name != "c" {
		t.Errorf("pending %v, want c", pending)
	}
	for _, name := range []string{"plain", "foreign"} {
		if s := f.reconcile(name); len(s.Status.LoadBalancer.Ingress) != 0 {
			t.Errorf("%s got %v", name, s.Status.LoadBalancer.Ingress)
		}
	}
	// Deleting a frees its address for c.
	if err := f.c.Delete(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	f.reconcile("a")
	if c := f.reconcile("c"); ingressIP(c) != "10.99.0.200" {
		t.Fatalf("c = %q after a was deleted, want 10.99.0.200", ingressIP(c))
	}
	if len(f.r.pendingRequests()) != 0 {
		t.Errorf("still pending: %v", f.r.pendingRequests())
	}
}

func TestRequestedAddress(t *testing.T) {
	f := newFixture(t, "10.99.0.200-10.99.0.210",
		service("a", 0, corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.99.0.205" }),
		service("b", 1, corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.99.0.205" }),
		service("outside", 1, corev1.ServiceTypeLoadBalancer, func(s *corev1.Service) { s.Spec.LoadBalancerIP = "10.99.0.9" }),
	)
	if a := f.reconcile("a"); ingressIP(a) != "10.99.0.205" {
		t.Fatalf("a = %q, want its requested 10.99.0.205", ingressIP(a))
	}
	if b := f.reconcile("b"); ingressIP(b) != "" {
		t.Fatalf("b got %q, which a holds", ingressIP(b))
	}
	if o := f.reconcile("outside"); ingressIP(o) != "" {
		t.Fatalf("outside got %q", ingressIP(o))
	}
	ev := strings.Join(f.drainEvents(), "\n")
	for _, want := range []string{"already used by Service ns/a", "10.99.0.9 is not in the address pool"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %q:\n%s", want, ev)
		}
	}
}

func TestTypeChangeReleases(t *testing.T) {
	f := newFixture(t, "10.99.0.200-10.99.0.210", service("a", 0, corev1.ServiceTypeLoadBalancer))
	a := f.reconcile("a")
	if ingressIP(a) == "" {
		t.Fatal("no address")
	}
	lease := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: lb.LeaseNamespace, Name: lb.LeaseName("ns", "a")}}
	if err := f.c.Create(context.Background(), lease); err != nil {
		t.Fatal(err)
	}
	a.Spec.Type = corev1.ServiceTypeClusterIP
	if err := f.c.Update(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if a = f.reconcile("a"); len(a.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("ClusterIP Service keeps %v", a.Status.LoadBalancer.Ingress)
	}
	if err := f.c.Get(context.Background(), client.ObjectKeyFromObject(lease), lease); !apierrors.IsNotFound(err) {
		t.Errorf("announcers' lock not deleted: %v", err)
	}
}

// staleList is a client whose List still shows every Service without its
// load balancer status, as an informer cache does right after a write.
type staleList struct{ client.Client }

func (s staleList) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := s.Client.List(ctx, list, opts...); err != nil {
		return err
	}
	if l, ok := list.(*corev1.ServiceList); ok {
		for i := range l.Items {
			l.Items[i].Status = corev1.ServiceStatus{}
		}
	}
	return nil
}

func TestNoDoubleAllocationFromAStaleCache(t *testing.T) {
	f := newFixture(t, "10.99.0.200-10.99.0.210",
		service("a", 0, corev1.ServiceTypeLoadBalancer), service("b", 1, corev1.ServiceTypeLoadBalancer))
	f.r.Client = staleList{f.c}
	a, b := f.reconcile("a"), f.reconcile("b")
	if ingressIP(a) == "" || ingressIP(a) == ingressIP(b) {
		t.Fatalf("a = %q, b = %q: want two distinct addresses", ingressIP(a), ingressIP(b))
	}
}

func TestConflictRetries(t *testing.T) {
	f := newFixture(t, "10.99.0.200-10.99.0.210", service("a", 0, corev1.ServiceTypeLoadBalancer))
	stale := &corev1.Service{}
	if err := f.c.Get(context.Background(), types.NamespacedName{Namespace: "ns", Name: "a"}, stale); err != nil {
		t.Fatal(err)
	}
	stale.Labels = map[string]string{"changed": "yes"}
	if err := f.c.Update(context.Background(), stale.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	err := f.r.setStatus(context.Background(), stale, []corev1.LoadBalancerIngress{{IP: "10.99.0.200"}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("status write over a stale Service: %v, want a conflict", err)
	}
	if res, err := retry(err); err != nil || res.RequeueAfter == 0 {
		t.Errorf("retry(conflict) = %v, %v; want a quiet requeue", res, err)
	}
}
