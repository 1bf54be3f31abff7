package benchenv

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

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
	return UploadTestVMImageWith(ctx, dyn, bin, dataDir, dir, ns, name, testimage.Options{})
}

// UploadTestVMImageWith is UploadTestVMImage with the image built from
// opts (e.g. opts.Extra: more files in the initramfs).
func UploadTestVMImageWith(ctx context.Context, dyn dynamic.Interface, bin, dataDir, dir, ns, name string, opts testimage.Options) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	img, err := testimage.Build(dir, opts)
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

// FollowPodLog follows a container's log with the kubelet's timestamps
// (a VM launcher's: the guest's serial console) and calls fn with each
// line's time and text until fn returns false or ctx ends. Until the
// container runs, and when the stream ends, it opens the log again
// (every 200 ms), skipping the lines it has passed to fn already.
func FollowPodLog(ctx context.Context, cs kubernetes.Interface, ns, pod, container string, fn func(at time.Time, line string) bool) {
	var last time.Time // of the last line passed to fn
	for ctx.Err() == nil {
		opts := &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}
		since := last
		if !since.IsZero() {
			opts.SinceTime = &metav1.Time{Time: since}
		}
		stream, err := cs.CoreV1().Pods(ns).GetLogs(pod, opts).Stream(ctx)
		if err != nil {
			Sleep(ctx, 200*time.Millisecond)
			continue
		}
		sc := bufio.NewScanner(stream)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			stamp, text, ok := strings.Cut(sc.Text(), " ")
			at, err := time.Parse(time.RFC3339Nano, stamp)
			if !ok || err != nil || (!since.IsZero() && !at.After(since)) {
				continue
			}
			last = at
			if !fn(at, text) {
				stream.Close()
				return
			}
		}
		stream.Close()
		Sleep(ctx, 200*time.Millisecond)
	}
}
