package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/strata-cloud/strata/internal/vm/testimage"
)

// ImageGVR is Strata's VM image resource.
var ImageGVR = schema.GroupVersionResource{Group: "storage.strata.io", Version: "v1alpha1", Resource: "images"}

// UploadTestVMImage builds the e2e tests' test VM (internal/vm/testimage:
// the host's Debian kernel and a busybox initramfs that prints
// testimage.Marker, on a boot disk) in dir, uploads it as the Image name of
// namespace ns with `bin image upload` against the server on dataDir, and
// waits until the Image is Active. It returns the Image's OCI artifact (as
// launcher pods' image volumes name it).
func UploadTestVMImage(ctx context.Context, dyn dynamic.Interface, bin, dataDir, dir, ns, name string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	img, err := testimage.Build(dir, testimage.Options{})
	if err != nil {
		return "", fmt.Errorf("test VM image: %w (hack/install-deps.sh installs the kernel and busybox)", err)
	}
	disk, err := testimage.BootDisk(dir, img)
	if err != nil {
		return "", fmt.Errorf("test VM boot disk: %w", err)
	}
	up := exec.CommandContext(ctx, bin, "image", "upload", name, disk, "-n", ns, "--data-dir", dataDir)
	up.Env = append(os.Environ(), "KUBECONFIG=") // the server's admin credentials from --data-dir
	if out, err := up.CombinedOutput(); err != nil {
		return "", fmt.Errorf("strata image upload: %v: %s", err, out)
	}
	// The upload returns once the Image is stored; its status names the
	// artifact the nodes pull.
	var ref string
	deadline := time.Now().Add(time.Minute)
	for {
		u, err := dyn.Resource(ImageGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		ref, _, _ = unstructured.NestedString(u.Object, "status", "reference")
		if phase == "Active" && ref != "" {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("image %s: phase %q, reference %q after a minute", name, phase, ref)
		}
		if err := Sleep(ctx, 200*time.Millisecond); err != nil {
			return "", err
		}
	}
	if info, err := os.Stat(disk); err == nil {
		fmt.Printf("test VM image %s uploaded (%.1f MiB, kernel %s): %s\n", name, float64(info.Size())/(1<<20), filepath.Base(img.Kernel), ref)
	}
	return ref, nil
}
