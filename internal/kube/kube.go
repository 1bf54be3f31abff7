// Package kube configures and runs the upstream Kubernetes control-plane
// components (kube-apiserver, kube-controller-manager, kube-scheduler)
// in-process. It is the only package that imports k8s.io/kubernetes command
// code; it chooses their flags and owns their lifecycle, and never changes
// what they do.
package kube

import (
	"fmt"
	"github.com/strata-cloud/strata/internal/version"
	"slices"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
)

// Version is the Kubernetes version embedded in this binary. The build sets
// k8s.io/component-base/version to the same value through -ldflags.
const Version = version.Kubernetes

// parseInto parses args into every flag set of fss, the way the upstream
// cobra commands would, and names the component on error.
func parseInto(component string, fss cliflag.NamedFlagSets, args []string) error {
	fs := pflag.NewFlagSet(component, pflag.ContinueOnError)
	fs.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	names := make([]string, 0, len(fss.FlagSets))
	for name := range fss.FlagSets {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		fs.AddFlagSet(fss.FlagSets[name])
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%s flags: %w", component, err)
	}
	return nil
}
