package v1alpha1

import "slices"

// VolumeNames are the Volumes (storage.strata.io) the VM uses or still
// holds: its root volume, its spec's volumes and those in its status
// (being detached), each once.
func (vm *VirtualMachine) VolumeNames() []string {
	var names []string
	if vm.Spec.RootVolume != "" {
		names = append(names, vm.Spec.RootVolume)
	}
	for _, v := range vm.Spec.Volumes {
		names = append(names, v.Volume)
	}
	for _, v := range vm.Status.Volumes {
		if !slices.Contains(names, v.Volume) {
			names = append(names, v.Volume)
		}
	}
	return names
}
