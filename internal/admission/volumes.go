package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	k8sadmission "k8s.io/apiserver/pkg/admission"
	"k8s.io/client-go/dynamic"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// VolumeIntegrity is the plugin that refuses, as Cinder does, deleting a
// Volume that is attached, has snapshots or backs a bound
// PersistentVolume (409 Conflict), and a Volume smaller than its source
// Image, snapshot or volume, or shrinking (422 Invalid, naming spec.size).
const VolumeIntegrity = "StrataVolumeIntegrity"

var (
	volumesGVR        = storagev1alpha1.GroupVersion.WithResource("volumes")
	volumeSnapshotGVR = storagev1alpha1.GroupVersion.WithResource("volumesnapshots")
	imagesGVR         = storagev1alpha1.GroupVersion.WithResource("images")
	pvGVR             = schema.GroupVersionResource{Version: "v1", Resource: "persistentvolumes"}
	volumeKind        = storagev1alpha1.GroupVersion.WithKind("Volume").GroupKind()
)

type volumeIntegrity struct {
	*k8sadmission.Handler
	client dynamic.Interface
}

var _ k8sadmission.ValidationInterface = (*volumeIntegrity)(nil)

// SetDynamicClient is called by the apiserver's plugin initializer.
func (p *volumeIntegrity) SetDynamicClient(c dynamic.Interface) { p.client = c }

// ValidateInitialization checks that the initializer gave a client.
func (p *volumeIntegrity) ValidateInitialization() error {
	if p.client == nil {
		return errors.New(VolumeIntegrity + ": no dynamic client")
	}
	return nil
}

// Validate dispatches on the operation.
func (p *volumeIntegrity) Validate(ctx context.Context, a k8sadmission.Attributes, _ k8sadmission.ObjectInterfaces) error {
	if a.GetResource() != volumesGVR || a.GetSubresource() != "" {
		return nil
	}
	switch a.GetOperation() {
	case k8sadmission.Delete:
		if a.GetName() == "" {
			return nil
		}
		return p.volumeDelete(ctx, a.GetNamespace(), a.GetName())
	case k8sadmission.Create:
		v := &storagev1alpha1.Volume{}
		if err := decode(a.GetObject(), v); err != nil {
			return err
		}
		return p.volumeCreate(ctx, v)
	case k8sadmission.Update:
		v, old := &storagev1alpha1.Volume{}, &storagev1alpha1.Volume{}
		if err := decode(a.GetObject(), v); err != nil {
			return err
		}
		if err := decode(a.GetOldObject(), old); err != nil {
			return err
		}
		if v.Spec.Size.Cmp(old.Spec.Size) < 0 {
			return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.Invalid(field.NewPath("spec", "size"), v.Spec.Size.String(),
				fmt.Sprintf("a volume cannot shrink (it is %s)", old.Spec.Size.String()))})
		}
	}
	return nil
}

func (p *volumeIntegrity) volumeDelete(ctx context.Context, ns, name string) error {
	v := &storagev1alpha1.Volume{}
	found, err := get(ctx, p.client, volumesGVR, ns, name, v)
	if err != nil || !found || v.DeletionTimestamp != nil {
		return err
	}
	if nsObj, err := p.client.Resource(namespacesGVR).Get(ctx, ns, metav1.GetOptions{}); err == nil && nsObj.GetDeletionTimestamp() != nil {
		return nil // the namespace takes everything in it
	}
	conflict := func(msg string) error {
		return apierrors.NewConflict(volumesGVR.GroupResource(), name, errors.New(msg))
	}
	if len(v.Status.Attachments) > 0 {
		var users []string
		for _, at := range v.Status.Attachments {
			users = append(users, strings.ToLower(at.Kind)+" "+at.Name)
		}
		return conflict(fmt.Sprintf("volume %q is attached to %s; detach it first", name, strings.Join(users, ", ")))
	}
	snaps, err := list[storagev1alpha1.VolumeSnapshot](ctx, p.client, volumeSnapshotGVR, ns)
	if err != nil {
		return err
	}
	var names []string
	for _, s := range snaps {
		if s.Spec.Volume == name && s.DeletionTimestamp == nil {
			names = append(names, s.Name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		return conflict(fmt.Sprintf("volume %q has snapshots %s; delete them first", name, strings.Join(names, ", ")))
	}
	if v.Annotations[storagev1alpha1.ClaimAnnotation] != "" {
		pv, err := p.client.Resource(pvGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if phase, _, _ := unstructuredString(pv.Object, "status", "phase"); phase == "Bound" {
				return conflict(fmt.Sprintf("volume %q backs PersistentVolume %s, bound to claim %s; delete the claim instead", name, name, v.Annotations[storagev1alpha1.ClaimAnnotation]))
			}
		} else if !apierrors.IsNotFound(err) {
			return apierrors.NewInternalError(err)
		}
	}
	return nil
}

func (p *volumeIntegrity) volumeCreate(ctx context.Context, v *storagev1alpha1.Volume) error {
	sizePath := field.NewPath("spec", "size")
	if v.Spec.Size.Sign() <= 0 {
		return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.Invalid(sizePath, v.Spec.Size.String(), "must be positive")})
	}
	src := v.Spec.Source
	if src == nil {
		return nil
	}
	var need *resource.Quantity
	var what string
	switch {
	case src.Image != "":
		img := &storagev1alpha1.Image{}
		found, err := get(ctx, p.client, imagesGVR, v.Namespace, src.Image, img)
		if err != nil {
			return err
		}
		if !found {
			return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.NotFound(field.NewPath("spec", "source", "image"), src.Image)})
		}
		if n := img.Status.VirtualSizeBytes; n > 0 {
			need, what = resource.NewQuantity(n, resource.BinarySI), fmt.Sprintf("image %q", src.Image)
		}
		if n := img.Spec.MinDiskGiB << 30; n > 0 && (need == nil || n > need.Value()) {
			need, what = resource.NewQuantity(n, resource.BinarySI), fmt.Sprintf("image %q (minDiskGiB)", src.Image)
		}
	case src.Snapshot != "":
		s := &storagev1alpha1.VolumeSnapshot{}
		found, err := get(ctx, p.client, volumeSnapshotGVR, v.Namespace, src.Snapshot, s)
		if err != nil {
			return err
		}
		if !found {
			return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.NotFound(field.NewPath("spec", "source", "snapshot"), src.Snapshot)})
		}
		if s.Status.Size != nil {
			need, what = s.Status.Size, fmt.Sprintf("snapshot %q", src.Snapshot)
		}
	case src.Volume != "":
		s := &storagev1alpha1.Volume{}
		found, err := get(ctx, p.client, volumesGVR, v.Namespace, src.Volume, s)
		if err != nil {
			return err
		}
		if !found {
			return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.NotFound(field.NewPath("spec", "source", "volume"), src.Volume)})
		}
		need, what = &s.Spec.Size, fmt.Sprintf("volume %q", src.Volume)
	}
	if need != nil && v.Spec.Size.Cmp(*need) < 0 {
		return apierrors.NewInvalid(volumeKind, v.Name, field.ErrorList{field.Invalid(sizePath, v.Spec.Size.String(),
			fmt.Sprintf("must be at least the size of %s, %s", what, need.String()))})
	}
	return nil
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	cur := any(obj)
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[f]
	}
	s, ok := cur.(string)
	return s, ok, nil
}
