package server

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	computev1alpha1 "github.com/strata-cloud/strata/api/compute/v1alpha1"
	identityv1alpha1 "github.com/strata-cloud/strata/api/identity/v1alpha1"
	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
	storagev1alpha1 "github.com/strata-cloud/strata/api/storage/v1alpha1"
	"github.com/strata-cloud/strata/internal/controller/identity"
	"github.com/strata-cloud/strata/internal/controller/image"
	"github.com/strata-cloud/strata/internal/controller/keypair"
	"github.com/strata-cloud/strata/internal/controller/networking"
	"github.com/strata-cloud/strata/internal/controller/virtualmachine"
	"github.com/strata-cloud/strata/internal/controller/virtualmachinepool"
	"github.com/strata-cloud/strata/internal/controller/vmmigration"
	"github.com/strata-cloud/strata/internal/controller/volume"
)

// strataControllersLease is the leader-election Lease of Strata's own
// controllers: with several servers, one runs them.
const strataControllersLease = "strata-controllers"

// runStrataControllers runs Strata's reconcilers (controller-runtime) until
// ctx is done.
// Imported VM images go to images.
func runStrataControllers(ctx context.Context, config *rest.Config, log *slog.Logger, electLeader bool, launcher virtualmachine.LauncherOptions, images image.Store, lbPool string) error {
	// controller-runtime's logger is process-wide; its info lines (every
	// watch it starts) are below Strata's default level.
	ctrl.SetLogger(logr.FromSlogHandler(minLevel{log.Handler(), slog.LevelWarn}))
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := computev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := storagev1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := networkingv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	if err := identityv1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(config, ctrl.Options{
		Scheme:                        scheme,
		Metrics:                       metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:        "0",
		LeaderElection:                electLeader,
		LeaderElectionID:              strataControllersLease,
		LeaderElectionNamespace:       "kube-system",
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}
	if err := (&virtualmachine.Reconciler{Client: mgr.GetClient(), Options: launcher}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&virtualmachinepool.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&vmmigration.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&keypair.Reconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&image.Reconciler{Client: mgr.GetClient(), Store: images}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := setupLoadBalancers(mgr, lbPool); err != nil {
		return err
	}
	if err := networking.Setup(mgr); err != nil {
		return err
	}
	if err := identity.Setup(mgr); err != nil {
		return err
	}
	if err := volume.Setup(mgr); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

// minLevel drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }
