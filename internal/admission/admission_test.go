package admission

import (
	"context"
	"net/http"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/initializer"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func vm(ns, name, image string, deleting bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": computev1alpha1.GroupVersion.String(), "kind": "VirtualMachine",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"image": image},
	}}
	if deleting {
		now := metav1.Now()
		u.SetDeletionTimestamp(&now)
	}
	return u
}

func namespace(name string, deleting bool) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}}
	if deleting {
		now := metav1.Now()
		u.SetDeletionTimestamp(&now)
	}
	return u
}

// dynamicInitializer gives plugins a client, as the apiserver's does.
type dynamicInitializer struct{ client dynamic.Interface }

func (d dynamicInitializer) Initialize(p k8sadmission.Interface) {
	if w, ok := p.(initializer.WantsDynamicClient); ok {
		w.SetDynamicClient(d.client)
	}
}

func newPlugin(t *testing.T, objs ...runtime.Object) k8sadmission.ValidationInterface {
	t.Helper()
	plugins := k8sadmission.NewPlugins()
	Register(plugins)
	if _, err := plugins.InitPlugin(ImageInUse, nil, k8sadmission.PluginInitializers{}); err == nil {
		t.Error("the plugin initializes without a client")
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		vmsResource: "VirtualMachineList",
	}, objs...)
	p, err := plugins.InitPlugin(ImageInUse, nil, dynamicInitializer{client})
	if err != nil {
		t.Fatal(err)
	}
	return p.(k8sadmission.ValidationInterface)
}

func deleteImage(ns, name string) k8sadmission.Attributes {
	gvr := storagev1alpha1.GroupVersion.WithResource("images")
	return k8sadmission.NewAttributesRecord(nil, nil, storagev1alpha1.GroupVersion.WithKind("Image"), ns, name, gvr, "", k8sadmission.Delete, &metav1.DeleteOptions{}, false, nil)
}

func TestImageInUse(t *testing.T) {
	p := newPlugin(t,
		vm("demo", "web2", "debian", false), vm("demo", "web1", "debian", false), vm("demo", "db", "ubuntu", false),
		vm("demo", "old", "fedora", true), vm("other", "x", "alpine", false),
		namespace("demo", false), namespace("other", true))
	ctx := context.Background()

	err := p.Validate(ctx, deleteImage("demo", "debian"), nil)
	if !apierrors.IsConflict(err) {
		t.Fatalf("deleting an image two VMs use: %v, want 409 Conflict", err)
	}
	want := `image "debian" is in use by virtual machines web1, web2 in namespace demo; delete them first`
	if status := err.(apierrors.APIStatus).Status(); status.Code != http.StatusConflict || !strings.Contains(status.Message, want) {
		t.Errorf("refusal %d %q, want 409 with %q", status.Code, status.Message, want)
	}
	if err := p.Validate(ctx, deleteImage("demo", "ubuntu"), nil); err == nil || !strings.Contains(err.Error(), `by virtual machine db in namespace demo; delete it first`) {
		t.Errorf("deleting an image one VM uses: %v", err)
	}
	for _, c := range []struct{ why, ns, name string }{
		{"unused", "demo", "centos"},
		{"used only by a VM being deleted", "demo", "fedora"},
		{"used in another namespace", "demo", "alpine"},
		{"in a namespace being deleted", "other", "alpine"},
	} {
		if err := p.Validate(ctx, deleteImage(c.ns, c.name), nil); err != nil {
			t.Errorf("%s: %v, want allowed", c.why, err)
		}
	}
	// Other operations and kinds pass untouched.
	create := k8sadmission.NewAttributesRecord(nil, nil, storagev1alpha1.GroupVersion.WithKind("Image"), "demo", "debian",
		storagev1alpha1.GroupVersion.WithResource("images"), "", k8sadmission.Create, &metav1.CreateOptions{}, false, nil)
	if p.Handles(k8sadmission.Create) || p.Validate(ctx, create, nil) != nil {
		t.Error("the plugin acts on create")
	}
	pod := k8sadmission.NewAttributesRecord(nil, nil, schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, "demo", "debian",
		schema.GroupVersionResource{Version: "v1", Resource: "pods"}, "", k8sadmission.Delete, &metav1.DeleteOptions{}, false, nil)
	if err := p.Validate(ctx, pod, nil); err != nil {
		t.Errorf("deleting a pod named like a used image: %v", err)
	}
}

func TestOrder(t *testing.T) {
	got := Order([]string{"NamespaceLifecycle", "ValidatingAdmissionWebhook", "ResourceQuota"})
	if strings.Join(got, ",") != "NamespaceLifecycle,ValidatingAdmissionWebhook,"+ImageInUse+","+NetworkIntegrity+","+VolumeIntegrity+",ResourceQuota" {
		t.Errorf("order %v", got)
	}
	if got := Order([]string{"A"}); strings.Join(got, ",") != "A,"+ImageInUse+","+NetworkIntegrity+","+VolumeIntegrity {
		t.Errorf("order without ResourceQuota %v", got)
	}
}
