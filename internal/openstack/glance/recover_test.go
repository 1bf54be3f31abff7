package glance

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	storagev1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
)

func TestRecoverUploads(t *testing.T) {
	saving := func(name, msg string) *storagev1.Image {
		return &storagev1.Image{ObjectMeta: metav1.ObjectMeta{Namespace: "p1", Name: name},
			Status: storagev1.ImageStatus{Phase: storagev1.ImageSaving, Message: msg}}
	}
	const me = "host-a/200-2"
	e := newEnv(t,
		saving("cut", uploadingMessage("host-a/100-1")), // an earlier process of this host
		saving("mine", uploadingMessage(me)),            // this process's, in flight
		saving("theirs", uploadingMessage("host-b/100-1")),
		saving("native", ""), // not Glance's
	)
	n, err := RecoverUploads(context.Background(), e.c, me)
	if err != nil || n != 1 {
		t.Fatalf("RecoverUploads = %d, %v; want 1", n, err)
	}
	for name, want := range map[string]storagev1.ImagePhase{"cut": storagev1.ImageQueued, "mine": storagev1.ImageSaving, "theirs": storagev1.ImageSaving, "native": storagev1.ImageSaving} {
		img := &storagev1.Image{}
		if err := e.c.Get(context.Background(), types.NamespacedName{Namespace: "p1", Name: name}, img); err != nil {
			t.Fatal(err)
		}
		if img.Status.Phase != want {
			t.Errorf("%s: phase %s (%s), want %s", name, img.Status.Phase, img.Status.Message, want)
		}
	}
	// The queued image takes an upload again.
	if got := Status(e.image("p1", "cut")); got != "queued" {
		t.Errorf("recovered image's Glance status %q", got)
	}
}
