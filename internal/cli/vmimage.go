package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
)

// vmImageRegistry is the registry name VM images are referenced by. Every
// node's containerd resolves all names through Strata's registry first,
// where the images are; the name itself never resolves.
const vmImageRegistry = "images.strata.invalid"

func newImageUploadCmd() *cobra.Command {
	var dataDir, namespace, registryURL string
	cmd := &cobra.Command{
		Use:   "upload NAME FILE",
		Short: "Upload a VM disk image (qcow2 or raw) as the Image NAME; nodes pull and cache it",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return uploadImage(cmd.Context(), cmd.OutOrStdout(), dataDir, registryURL, namespace, args[0], args[1])
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (for the admin kubeconfig)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace (project) of the image")
	cmd.Flags().StringVar(&registryURL, "registry", "", "the registry's https://HOST:PORT (default: the one the server publishes)")
	return cmd
}

func uploadImage(ctx context.Context, out io.Writer, dataDir, registryURL, namespace, imageName, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	info, err := diskimage.Detect(f, st.Size())
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !diskimage.Bootable(info.Format) {
		return fmt.Errorf("%s is a %s image; VMs boot raw or qcow2 (convert it: qemu-img convert -O qcow2 %s out.qcow2)", file, info.Format, file)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(f, 0, st.Size())); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	checksum := hex.EncodeToString(sum.Sum(nil))
	fmt.Fprintf(out, "%s: %s, %d bytes (virtual %d), sha256 %s\n", file, info.Format, info.Size, info.VirtualSize, checksum)

	reg, err := adminRegistry(ctx, dataDir, registryURL)
	if err != nil {
		return err
	}
	defer reg.transport.CloseIdleConnections()
	scheme := runtime.NewScheme()
	if err := storagev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	c, err := client.New(reg.restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	img := &storagev1alpha1.Image{ObjectMeta: metav1.ObjectMeta{Name: imageName, Namespace: namespace}}
	if err := c.Create(ctx, img); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create Image %s/%s: %w", namespace, imageName, err)
	}
	setStatus := func(s storagev1alpha1.ImageStatus) error {
		cur := &storagev1alpha1.Image{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: namespace, Name: imageName}, cur); err != nil {
			return err
		}
		cur.Status = s
		return c.Status().Update(ctx, cur)
	}
	if err := setStatus(storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageSaving}); err != nil {
		return fmt.Errorf("Image %s/%s: %w", namespace, imageName, err)
	}
	fail := func(err error) error {
		_ = setStatus(storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageError, Message: err.Error()})
		return err
	}

	artifact, err := diskimage.Artifact(file)
	if err != nil {
		return fail(err)
	}
	ref, err := name.NewTag(fmt.Sprintf("%s/vm-images/%s/%s:%s", vmImageRegistry, namespace, imageName, checksum[:16]))
	if err != nil {
		return fail(fmt.Errorf("image name %q: %w", imageName, err))
	}
	dst, err := ociimage.MirrorRef(ref, reg.host)
	if err != nil {
		return fail(err)
	}
	progress := make(chan v1.Update, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := time.Time{}
		for u := range progress {
			if u.Total > 0 && (time.Since(last) > time.Second || u.Complete == u.Total) {
				fmt.Fprintf(out, "uploading: %d%% (%d of %d bytes)\n", u.Complete*100/u.Total, u.Complete, u.Total)
				last = time.Now()
			}
		}
	}()
	err = remote.Write(dst, artifact, remote.WithContext(ctx), remote.WithTransport(reg.transport), remote.WithProgress(progress))
	<-done
	if err != nil {
		return fail(fmt.Errorf("upload to %s: %w", dst, explainPushError(err, reg.url)))
	}
	digest, err := artifact.Digest()
	if err != nil {
		return fail(err)
	}
	if err := setStatus(storagev1alpha1.ImageStatus{
		Phase: storagev1alpha1.ImageActive, Format: info.Format, SizeBytes: info.Size, VirtualSizeBytes: info.VirtualSize,
		Checksum: checksum, Reference: ref.Context().Digest(digest.String()).String(),
	}); err != nil {
		return fmt.Errorf("Image %s/%s: %w", namespace, imageName, err)
	}
	fmt.Fprintf(out, "image %s/%s is Active\n", namespace, imageName)
	return nil
}
