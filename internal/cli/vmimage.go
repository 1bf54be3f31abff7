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
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/blob"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
	"github.com/strata-cloud/strata/internal/storage/ociimage"
)

func newImageUploadCmd() *cobra.Command {
	var dataDir, namespace, registryURL, sourceURL, checksum string
	cmd := &cobra.Command{
		Use:   "upload NAME FILE | NAME --url URL",
		Short: "Upload a VM disk image (qcow2 or raw) as the Image NAME, or have the server import it from --url; nodes pull and cache it",
		Long: `Upload a VM disk image (qcow2 or raw) as the Image NAME, or with --url have
the server import it from an http(s) URL and follow the import's progress
(interrupting only stops following: the server carries on). The format is
detected from the bytes. With --checksum sha256:HEX the bytes must have that
SHA-256: a local file is checked before anything is stored, an import fails
in status.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if sourceURL != "" {
				if len(args) != 1 {
					return fmt.Errorf("with --url, give only the image's NAME (got %d arguments)", len(args))
				}
				return nil
			}
			if len(args) != 2 {
				return fmt.Errorf("give the image's NAME and a FILE to upload, or NAME and --url URL (got %d arguments)", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if checksum != "" {
				if _, err := blob.ParseDigest(checksum); err != nil {
					return fmt.Errorf("--checksum %q: want sha256:<64 hex digits>", checksum)
				}
			}
			if sourceURL != "" {
				return importImageFromURL(cmd.Context(), cmd.OutOrStdout(), dataDir, namespace, args[0], sourceURL, checksum)
			}
			return uploadImage(cmd.Context(), cmd.OutOrStdout(), dataDir, registryURL, namespace, args[0], args[1], checksum)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the server's data directory (for the admin kubeconfig)")
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace (project) of the image")
	cmd.Flags().StringVar(&registryURL, "registry", "", "the registry's https://HOST:PORT (default: the one the server publishes)")
	cmd.Flags().StringVar(&sourceURL, "url", "", "an http(s) URL the server imports the image from, instead of a local FILE")
	cmd.Flags().StringVar(&checksum, "checksum", "", "the SHA-256 the image must have, as sha256:HEX")
	return cmd
}

// imageClient is a controller-runtime client for Images, from the
// server's admin kubeconfig.
func imageClient(restConfig *rest.Config) (client.Client, error) {
	scheme := runtime.NewScheme()
	if err := storagev1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(restConfig, client.Options{Scheme: scheme})
}

func uploadImage(ctx context.Context, out io.Writer, dataDir, registryURL, namespace, imageName, file, checksumFlag string) error {
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
	if err := diskimage.CheckBootable(info); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, io.NewSectionReader(f, 0, st.Size())); err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	checksum := hex.EncodeToString(sum.Sum(nil))
	if err := diskimage.VerifyChecksum(checksumFlag, checksum); err != nil {
		return fmt.Errorf("%s: %w; nothing was uploaded", file, err)
	}
	fmt.Fprintf(out, "%s: %s, %d bytes (virtual %d), sha256 %s\n", file, info.Format, info.Size, info.VirtualSize, checksum)

	reg, err := adminRegistry(ctx, dataDir, registryURL)
	if err != nil {
		return err
	}
	defer reg.transport.CloseIdleConnections()
	c, err := imageClient(reg.restConfig)
	if err != nil {
		return err
	}
	img := &storagev1alpha1.Image{ObjectMeta: metav1.ObjectMeta{Name: imageName, Namespace: namespace}}
	if checksumFlag != "" {
		img.Spec.Source = &storagev1alpha1.ImageSource{Checksum: checksumFlag}
	}
	err = c.Create(ctx, img)
	if apierrors.IsAlreadyExists(err) {
		err = checkUploadTarget(ctx, c, img, checksum)
	}
	if err != nil {
		return fmt.Errorf("Image %s/%s: %w", namespace, imageName, err)
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
	ref, err := name.NewTag(fmt.Sprintf("%s/%s:%s", diskimage.Registry, diskimage.Repository(namespace, imageName), checksum[:16]))
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

// checkUploadTarget refuses to upload into an existing Image that imports
// from a URL or expects other bytes: nothing is uploaded then.
func checkUploadTarget(ctx context.Context, c client.Client, img *storagev1alpha1.Image, checksum string) error {
	cur := &storagev1alpha1.Image{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(img), cur); err != nil {
		return err
	}
	src := cur.Spec.Source
	if src == nil {
		src = &storagev1alpha1.ImageSource{}
	}
	if src.URL != "" {
		return fmt.Errorf("it imports from %s (spec.source.url); delete it, or upload under another name", src.URL)
	}
	if err := diskimage.VerifyChecksum(src.Checksum, checksum); err != nil {
		return fmt.Errorf("spec.source.checksum: %w; nothing was uploaded", err)
	}
	if want := img.Spec.Source; want != nil && want.Checksum != src.Checksum {
		cur.Spec.Source = want
		return c.Update(ctx, cur)
	}
	return nil
}

// importImageFromURL creates (or points) the Image at sourceURL and
// follows the server's import until it is Active or fails.
func importImageFromURL(ctx context.Context, out io.Writer, dataDir, namespace, imageName, sourceURL, checksum string) error {
	restConfig, err := adminRESTConfig(dataDir)
	if err != nil {
		return err
	}
	c, err := imageClient(restConfig)
	if err != nil {
		return err
	}
	key := types.NamespacedName{Namespace: namespace, Name: imageName}
	src := &storagev1alpha1.ImageSource{URL: sourceURL, Checksum: checksum}
	img := &storagev1alpha1.Image{ObjectMeta: metav1.ObjectMeta{Name: imageName, Namespace: namespace}, Spec: storagev1alpha1.ImageSpec{Source: src}}
	err = c.Create(ctx, img)
	if apierrors.IsAlreadyExists(err) {
		// Point the Image at the URL: a changed spec is imported again.
		if err = c.Get(ctx, key, img); err == nil {
			img.Spec.Source = src
			err = c.Update(ctx, img)
		}
	}
	if err != nil {
		return fmt.Errorf("Image %s/%s: %w", namespace, imageName, err)
	}
	fmt.Fprintf(out, "image %s/%s: importing %s\n", namespace, imageName, sourceURL)
	generation, last := img.Generation, ""
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if err := c.Get(ctx, key, img); err != nil {
			return fmt.Errorf("Image %s/%s: %w", namespace, imageName, err)
		}
		st := img.Status
		if img.Generation != generation {
			return fmt.Errorf("Image %s/%s changed while importing; not following it further", namespace, imageName)
		}
		if st.ObservedGeneration == generation {
			switch st.Phase {
			case storagev1alpha1.ImageActive:
				fmt.Fprintf(out, "%s, %d bytes (virtual %d), sha256 %s\nimage %s/%s is Active\n", st.Format, st.SizeBytes, st.VirtualSizeBytes, st.Checksum, namespace, imageName)
				return nil
			case storagev1alpha1.ImageError:
				return fmt.Errorf("image %s/%s: %s", namespace, imageName, st.Message)
			}
		}
		if st.Phase == storagev1alpha1.ImageImporting && st.Progress != last {
			fmt.Fprintf(out, "importing: %s (%d bytes)\n", st.Progress, st.ImportedBytes)
			last = st.Progress
		}
	}
}
