// Package networking registers the control plane of tenant networking
// (networking.strata.io): the network, subnet, port, pod-port, default
// security group, router and floating IP reconcilers, in one call.
package networking

import (
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/strata-cloud/strata/internal/controller/floatingip"
	"github.com/strata-cloud/strata/internal/controller/network"
	"github.com/strata-cloud/strata/internal/controller/podport"
	"github.com/strata-cloud/strata/internal/controller/port"
	"github.com/strata-cloud/strata/internal/controller/router"
	"github.com/strata-cloud/strata/internal/controller/securitygroup"
	"github.com/strata-cloud/strata/internal/controller/subnet"
)

// Setup adds the networking reconcilers to mgr, whose scheme must hold
// networking.strata.io/v1alpha1 and core/v1.
func Setup(mgr ctrl.Manager) error {
	c := mgr.GetClient()
	ipam := subnet.IPAM{Client: c, Reader: mgr.GetAPIReader()}
	for _, r := range []interface{ SetupWithManager(ctrl.Manager) error }{
		&network.Reconciler{Client: c, Reader: mgr.GetAPIReader()},
		&subnet.Reconciler{Client: c},
		&port.Reconciler{Client: c, IPAM: ipam},
		&podport.Reconciler{Client: c},
		&securitygroup.Reconciler{Client: c},
		&router.Reconciler{Client: c, IPAM: ipam},
		&floatingip.Reconciler{Client: c, IPAM: ipam},
	} {
		if err := r.SetupWithManager(mgr); err != nil {
			return err
		}
	}
	return nil
}
