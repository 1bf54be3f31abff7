package glance

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

// An upload through Glance claims its image (phase Saving) with a message
// naming the server process that streams the bytes: "uploading through
// Glance on HOST/INSTANCE". A process that dies mid-upload leaves the
// image Saving; RecoverUploads, run when the next process on that host
// starts, puts such images back to queued, as Glance does after a failed
// upload, so that they can be uploaded again.
const uploadingPrefix = "uploading through Glance on "

// NewInstance names this server process: the host and something that
// differs at every start.
func NewInstance() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d-%d", host, os.Getpid(), time.Now().UnixNano())
}

func uploadingMessage(instance string) string { return uploadingPrefix + instance }

// RecoverUploads puts back to queued the images left Saving by an earlier
// process of this host (an instance other than this one, whose host part is
// the same), and returns how many. Other hosts' uploads are theirs to
// recover.
func RecoverUploads(ctx context.Context, c client.Client, instance string) (int, error) {
	host, _, _ := strings.Cut(instance, "/")
	var l storagev1.ImageList
	if err := c.List(ctx, &l); err != nil {
		return 0, err
	}
	n := 0
	for i := range l.Items {
		img := &l.Items[i]
		by, ok := strings.CutPrefix(img.Status.Message, uploadingPrefix)
		if img.Status.Phase != storagev1.ImageSaving || !ok || by == instance || !strings.HasPrefix(by, host+"/") {
			continue
		}
		key := types.NamespacedName{Namespace: img.Namespace, Name: img.Name}
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			if err := c.Get(ctx, key, img); err != nil {
				return err
			}
			if img.Status.Phase != storagev1.ImageSaving || img.Status.Message != uploadingPrefix+by {
				return nil // changed meanwhile
			}
			img.Status = storagev1.ImageStatus{Phase: storagev1.ImageQueued,
				Message: "the upload through Glance was cut short (its server stopped); upload the data again"}
			return c.Status().Update(ctx, img)
		})
		if client.IgnoreNotFound(err) != nil {
			return n, fmt.Errorf("image %s: %w", key, err)
		}
		n++
	}
	return n, nil
}
