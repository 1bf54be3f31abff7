// Package finalizer is the start of every Strata reconciler that holds
// its objects with a finalizer.
package finalizer

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// Ensure adds name to obj's finalizers (an update) when it is missing. A
// NotFound (the object went meanwhile) is not an error.
func Ensure(ctx context.Context, c client.Client, obj client.Object, name string) error {
	if controllerutil.ContainsFinalizer(obj, name) {
		return nil
	}
	controllerutil.AddFinalizer(obj, name)
	return client.IgnoreNotFound(c.Update(ctx, obj))
}
