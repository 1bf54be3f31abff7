// Package admission holds Strata's own admission plugins, which the
// embedded kube-apiserver runs in its admission chain next to upstream's:
// rules about Strata's kinds that need other objects to decide, which
// CRD schemas and ValidatingAdmissionPolicy cannot look up.
package admission

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/dynamic"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// ImageInUse is the plugin that refuses to delete an Image that a
// VirtualMachine of its namespace boots from.
const ImageInUse = "StrataImageInUse"

// Register adds Strata's plugins to the apiserver's registry.
func Register(plugins *k8sadmission.Plugins) {
	plugins.Register(ImageInUse, func(io.Reader) (k8sadmission.Interface, error) {
		return &imageInUse{Handler: k8sadmission.NewHandler(k8sadmission.Delete)}, nil
	})
	plugins.Register(NetworkIntegrity, func(io.Reader) (k8sadmission.Interface, error) {
		return &networkIntegrity{Handler: k8sadmission.NewHandler(k8sadmission.Create, k8sadmission.Update, k8sadmission.Delete)}, nil
	})
	plugins.Register(VolumeIntegrity, func(io.Reader) (k8sadmission.Interface, error) {
		return &volumeIntegrity{Handler: k8sadmission.NewHandler(k8sadmission.Create, k8sadmission.Update, k8sadmission.Delete)}, nil
	})
}

// Order inserts Strata's plugins into upstream's recommended plugin order:
// before ResourceQuota, which upstream wants last, or at the end.
func Order(upstream []string) []string {
	i := slices.Index(upstream, "ResourceQuota")
	if i < 0 {
		i = len(upstream)
	}
	return slices.Insert(slices.Clone(upstream), i, ImageInUse, NetworkIntegrity, VolumeIntegrity)
}

var (
	imagesResource = storagev1alpha1.GroupVersion.WithResource("images").GroupResource()
	vmsResource    = computev1alpha1.GroupVersion.WithResource("virtualmachines")
	namespacesGVR  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
)

// imageInUse looks the VMs up through the apiserver's loopback client at
// each delete of an Image: deletes are rare, and a lookup is never stale.
type imageInUse struct {
	*k8sadmission.Handler
	client dynamic.Interface
}

var (
	_ k8sadmission.ValidationInterface = (*imageInUse)(nil)
	_ interface {
		SetDynamicClient(dynamic.Interface)
		ValidateInitialization() error
	} = (*imageInUse)(nil)
)

// SetDynamicClient is called by the apiserver's plugin initializer.
func (p *imageInUse) SetDynamicClient(c dynamic.Interface) { p.client = c }

// ValidateInitialization checks that the initializer gave a client.
func (p *imageInUse) ValidateInitialization() error {
	if p.client == nil {
		return errors.New(ImageInUse + ": no dynamic client")
	}
	return nil
}

// Validate refuses the delete of an Image that VMs boot from, with 409
// Conflict naming them. A namespace being deleted takes its Images along
// with its VMs.
func (p *imageInUse) Validate(ctx context.Context, a k8sadmission.Attributes, _ k8sadmission.ObjectInterfaces) error {
	if a.GetOperation() != k8sadmission.Delete || a.GetResource().GroupResource() != imagesResource || a.GetSubresource() != "" || a.GetName() == "" {
		return nil
	}
	vms, err := p.client.Resource(vmsResource).Namespace(a.GetNamespace()).List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) {
		return nil // no VirtualMachine kind (yet): nothing can use the image
	}
	if err != nil {
		return apierrors.NewInternalError(fmt.Errorf("list the virtual machines that could use image %q: %w", a.GetName(), err))
	}
	users := vmsUsing(vms.Items, a.GetName())
	if len(users) == 0 {
		return nil
	}
	ns, err := p.client.Resource(namespacesGVR).Get(ctx, a.GetNamespace(), metav1.GetOptions{})
	if err == nil && ns.GetDeletionTimestamp() != nil {
		return nil
	}
	return apierrors.NewConflict(a.GetResource().GroupResource(), a.GetName(), errors.New(inUseMessage(a.GetName(), a.GetNamespace(), users)))
}

// vmsUsing returns the names, sorted, of the VMs that boot from image and
// are not being deleted already.
func vmsUsing(vms []unstructured.Unstructured, image string) []string {
	var names []string
	for _, vm := range vms {
		if vm.GetDeletionTimestamp() != nil {
			continue
		}
		if v, _, _ := unstructured.NestedString(vm.Object, "spec", "image"); v == image {
			names = append(names, vm.GetName())
		}
	}
	slices.Sort(names)
	return names
}

func inUseMessage(image, namespace string, vms []string) string {
	what, them := "virtual machine", "it"
	if len(vms) > 1 {
		what, them = "virtual machines", "them"
	}
	return fmt.Sprintf("image %q is in use by %s %s in namespace %s; delete %s first", image, what, strings.Join(vms, ", "), namespace, them)
}
