// Package image imports VM disk Images from their spec.source.url into
// Strata's registry, with progress in status, and holds uploaded Images to
// the checksum their spec expects.
package image

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/storage/diskimage"
)

// defaultProgressInterval is how often an import writes its progress.
const defaultProgressInterval = 2 * time.Second

// Reconciler imports Images that name a source URL and checks uploaded
// Images against their expected checksum.
type Reconciler struct {
	Client client.Client
	Store  Store
	// HTTP fetches sources; nil means a client with connection timeouts
	// and no limit on a download's length.
	HTTP *http.Client
	// ProgressInterval is how often an import writes its progress to
	// status; zero means every two seconds.
	ProgressInterval time.Duration
}

// SetupWithManager registers the reconciler. Imports take as long as
// their downloads, so a few run side by side.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("image").
		For(&storagev1alpha1.Image{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(r)
}

// Reconcile imports one Image or checks its checksum.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	img := &storagev1alpha1.Image{}
	if err := r.Client.Get(ctx, req.NamespacedName, img); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if img.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	src := img.Spec.Source
	if src == nil || src.URL == "" {
		return ctrl.Result{}, r.checkUploaded(ctx, img)
	}
	done := img.Status.Phase == storagev1alpha1.ImageActive || img.Status.Phase == storagev1alpha1.ImageError
	if done && img.Status.ObservedGeneration == img.Generation {
		return ctrl.Result{}, nil
	}
	// Not finished for this spec: never started, changed since, or cut
	// short by a restart (reconciles of one Image never overlap, so no
	// import of it is running now).
	return ctrl.Result{}, r.runImport(ctx, img, source{url: src.URL, checksum: src.Checksum})
}

// checkUploaded fails an uploaded Image whose bytes' checksum is not the
// one its spec expects.
func (r *Reconciler) checkUploaded(ctx context.Context, img *storagev1alpha1.Image) error {
	if img.Spec.Source == nil || img.Status.Phase != storagev1alpha1.ImageActive || img.Status.Checksum == "" {
		return nil
	}
	err := diskimage.VerifyChecksum(img.Spec.Source.Checksum, img.Status.Checksum)
	if err == nil {
		return nil
	}
	return r.decideStatus(ctx, img, func(s *storagev1alpha1.ImageStatus) {
		s.Phase, s.Message = storagev1alpha1.ImageError, "the stored image does not match spec.source.checksum: "+err.Error()
	})
}

// runImport imports img's source, with its progress in status, and ends
// in phase Active or Error. It returns an error only to be retried.
func (r *Reconciler) runImport(ctx context.Context, img *storagev1alpha1.Image, src source) error {
	generation := img.Generation
	if err := r.decideStatus(ctx, img, func(s *storagev1alpha1.ImageStatus) {
		*s = storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageImporting, Progress: "0%", ObservedGeneration: s.ObservedGeneration}
	}); err != nil {
		return err
	}
	namespace, name := img.Namespace, img.Name
	var p progress
	stop := make(chan struct{})
	reported := make(chan struct{})
	go func() { // owns img until reported is closed
		defer close(reported)
		r.reportProgress(ctx, img, &p, stop)
	}()
	hc := r.httpClient()
	defer hc.CloseIdleConnections() // a default client is this import's alone
	result, err := importImage(ctx, hc, r.Store, namespace, name, src, &p)
	close(stop)
	<-reported
	if err != nil && ctx.Err() != nil {
		return err // shutting down: the next run starts over
	}
	return r.patchStatus(ctx, img, func(s *storagev1alpha1.ImageStatus) {
		if err != nil {
			*s = storagev1alpha1.ImageStatus{Phase: storagev1alpha1.ImageError, Message: "import failed: " + err.Error()}
		} else {
			*s = storagev1alpha1.ImageStatus{
				Phase: storagev1alpha1.ImageActive, Format: result.info.Format,
				SizeBytes: result.info.Size, VirtualSizeBytes: result.info.VirtualSize,
				Checksum: result.checksum, Reference: result.reference,
				Progress: "100%", ImportedBytes: p.done.Load(),
			}
		}
		s.ObservedGeneration = generation
	})
}

// reportProgress writes p to img's status now and then until stop.
func (r *Reconciler) reportProgress(ctx context.Context, img *storagev1alpha1.Image, p *progress, stop <-chan struct{}) {
	interval := r.ProgressInterval
	if interval <= 0 {
		interval = defaultProgressInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	last := int64(0)
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		done, total := p.done.Load(), p.total.Load()
		if done == last {
			continue
		}
		last = done
		// A failed progress write is not worth failing the import for.
		_ = r.patchStatus(ctx, img, func(s *storagev1alpha1.ImageStatus) {
			s.Progress, s.ImportedBytes = progressText(done, total), done
		})
	}
}

// progressText is status.progress: a percentage when the size is known.
func progressText(done, total int64) string {
	if total <= 0 {
		return fmt.Sprintf("%d MiB", done>>20)
	}
	return fmt.Sprintf("%d%%", min(done*100/total, 100))
}

// patchStatus changes img's status with a merge patch of the change, and
// leaves img as the server returns it, the base of the next patch.
func (r *Reconciler) patchStatus(ctx context.Context, img *storagev1alpha1.Image, change func(*storagev1alpha1.ImageStatus)) error {
	return r.patch(ctx, img, client.MergeFrom(img), change)
}

// decideStatus is patchStatus for a change decided on what img says: it
// fails with a conflict when img is older than the server's (the cache
// can lag behind), and the retry sees the newer one.
func (r *Reconciler) decideStatus(ctx context.Context, img *storagev1alpha1.Image, change func(*storagev1alpha1.ImageStatus)) error {
	return r.patch(ctx, img, client.MergeFromWithOptions(img, client.MergeFromWithOptimisticLock{}), change)
}

func (r *Reconciler) patch(ctx context.Context, img *storagev1alpha1.Image, p client.Patch, change func(*storagev1alpha1.ImageStatus)) error {
	cur := img.DeepCopy()
	change(&cur.Status)
	if err := r.Client.Status().Patch(ctx, cur, p); err != nil {
		return fmt.Errorf("image %s/%s status: %w", img.Namespace, img.Name, err)
	}
	*img = *cur
	return nil
}

func (r *Reconciler) httpClient() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		ForceAttemptHTTP2:     true,
	}}
}
