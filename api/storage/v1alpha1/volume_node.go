package v1alpha1

// NodeName is the node that holds the volume: the one its node agent
// reports, else the one asked for ("" while Strata has not placed it).
func (v *Volume) NodeName() string {
	if v.Status.Node != "" {
		return v.Status.Node
	}
	return v.Spec.Node
}
