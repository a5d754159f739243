package controller

import (
	"math"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// clusterOutcome turns what the steps found for a cluster credential into
// its next status and when to look at it again. The token's part is
// outcome's, as for a ClearanceCredential; on top come the counts, a
// selection that selects nothing, and the namespaces where another holds
// the target name, which degrade the credential without stopping the rest.
// It does not modify cc.
func clusterOutcome(cc *clearancev1alpha1.ClusterClearanceCredential, f clusterFindings, now time.Time, minForcedInterval time.Duration) (clearancev1alpha1.ClusterClearanceCredentialStatus, time.Duration) {
	st, requeue := outcome(asCredential(cc, ""), f.findings, now, minForcedInterval)
	out := clearancev1alpha1.ClusterClearanceCredentialStatus{
		ClearanceCredentialStatus: st,
		SelectedNamespaces:        count32(len(f.selected)),
		WrittenNamespaces:         count32(f.current),
		ConflictingNamespaceCount: count32(len(f.conflicts)),
	}
	if len(f.conflicts) > 0 {
		out.ConflictingNamespaces = f.conflicts[:min(len(f.conflicts), clearancev1alpha1.MaxListedConflicts)]
	}
	c := conditions{status: &out.ClearanceCredentialStatus, generation: cc.Generation, now: now}

	switch {
	case f.selectorProblem != "":
		c.stalled(clearancev1alpha1.ReasonNoNamespacesSelected, f.selectorProblem)
		return out, 0
	case len(f.selected) > 0 && len(f.conflicts) == len(f.selected) && !f.suspended:
		c.stalled(clearancev1alpha1.ReasonTargetConflict, clusterConflictMessage(cc.Spec.SecretName, f.conflicts, len(f.conflicts)))
		c.remove(clearancev1alpha1.ConditionDegraded)
		out.RenewalTime, out.NextAttemptTime = nil, nil
		return out, 0
	case len(f.selected) == 0 && !f.suspended:
		c.remove(clearancev1alpha1.ConditionReconciling, clearancev1alpha1.ConditionStalled, clearancev1alpha1.ConditionDegraded)
		c.set(clearancev1alpha1.ConditionReady, metav1.ConditionFalse, clearancev1alpha1.ReasonNoNamespacesSelected,
			"spec.namespaceSelector and spec.namespaces select no namespace the operator watches; a token is minted once one is selected")
		out.RenewalTime, out.NextAttemptTime = nil, nil
		return out, 0
	}

	degraded := meta.FindStatusCondition(out.Conditions, clearancev1alpha1.ConditionDegraded)
	switch {
	case len(f.conflicts) > 0 && (degraded == nil || degraded.Reason == clearancev1alpha1.ReasonTargetConflict):
		// A failing renewal's Degraded says more; the counts tell the rest.
		c.set(clearancev1alpha1.ConditionDegraded, metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict,
			clusterConflictMessage(cc.Spec.SecretName, f.conflicts, len(f.conflicts)))
	case len(f.conflicts) == 0 && degraded != nil && degraded.Reason == clearancev1alpha1.ReasonTargetConflict:
		c.remove(clearancev1alpha1.ConditionDegraded)
	}
	return out, requeue
}

// count32 is a count for the status: namespaces number far fewer than 2^31.
func count32(n int) int32 {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(n) //nolint:gosec // bounded above
}
