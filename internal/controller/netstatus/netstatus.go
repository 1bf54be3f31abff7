// Package netstatus is the Ready condition and Neutron status that every
// networking.strata.io controller reports, in one shape.
package netstatus

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	networkingv1alpha1 "github.com/strata-cloud/strata/api/networking/v1alpha1"
)

// Problem is why an object cannot be made ready: a condition reason
// (CamelCase) and a message in Neutron's words.
type Problem struct {
	Reason, Message string
}

func (p *Problem) Error() string { return p.Message }

// Ready sets the Ready condition True; transition times stay when unchanged.
func Ready(conds *[]metav1.Condition, generation int64, reason, message string) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: networkingv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: reason, Message: message, ObservedGeneration: generation})
}

// NotReady sets the Ready condition False with p's reason and message.
func NotReady(conds *[]metav1.Condition, generation int64, p *Problem) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: networkingv1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: p.Reason, Message: p.Message, ObservedGeneration: generation})
}
