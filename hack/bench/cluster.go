package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// Names of the cluster measurement's objects.
const (
	clusterResourceNS = "clearance-system"
	clusterCredName   = "shared"
	clusterSecretName = "shared-token"
	clusterLabel      = "bench.clearance.dev/shared"
	// clusterLabelled is how many namespaces are labelled one after another
	// once the N are written, each timed until its Secret holds the token.
	clusterLabelled = 10
	// clusterRenewals is how many renewals are counted.
	clusterRenewals = 2
)

// ClusterResult is a ClusterClearanceCredential selecting N namespaces.
type ClusterResult struct {
	N int `json:"n"`
	// SecondsToAllWritten runs from the create of the credential until its
	// status says every selected namespace holds the token.
	SecondsToAllWritten float64 `json:"secondsToAllWritten"`
	// NewNamespaceSeconds are, for namespaces labelled one by one with N
	// selected, the times from the label update until the namespace's Secret
	// holds the current token (polled every 10 ms).
	NewNamespaceSeconds []float64 `json:"newNamespaceSeconds"`
	// NewNamespaceFloorSeconds are the same copies done by the harness: GET
	// one target Secret, create it in a new namespace.
	NewNamespaceFloorSeconds []float64 `json:"newNamespaceFloorSeconds"`
	// TokenRequestsForNewNamespaces counts token requests while they were labelled (want 0).
	TokenRequestsForNewNamespaces int64 `json:"tokenRequestsForNewNamespaces"`
	// Renewals observed and the token requests made over them (want one each).
	Renewals                int        `json:"renewals"`
	RenewalTokenRequests    int64      `json:"renewalTokenRequests"`
	TokenRequestsPerRenewal float64    `json:"tokenRequestsPerRenewal"`
	SecondsToAllRenewedLast float64    `json:"secondsToAllRenewedLast"`
	TokenTTLSeconds         float64    `json:"tokenTTLSeconds"`
	WrittenAfterRenewals    int32      `json:"writtenAfterRenewals"`
	SelectedAfterRenewals   int32      `json:"selectedAfterRenewals"`
	LoadAvg                 [3]float64 `json:"loadAvg"`
	Error                   string     `json:"error,omitempty"`
}

func (b *bench) runCluster(ctx context.Context) {
	n := b.cfg.ClusterN
	ttl := b.cfg.ClusterTTL.D()
	cr := &ClusterResult{N: n, TokenTTLSeconds: ttl.Seconds(), LoadAvg: loadAvg()}
	b.res.Cluster = cr
	name := fmt.Sprintf("cluster-n%d", n)
	e, err := b.startEnv(ctx, name, ttl)
	if err != nil {
		cr.Error = err.Error()
		b.fail(name, err)
		return
	}
	defer e.stop()
	if err := e.measureCluster(ctx, cr); err != nil {
		cr.Error = err.Error()
		b.fail(name, err)
	}
}

func (e *env) measureCluster(ctx context.Context, cr *ClusterResult) error {
	b := e.b
	files, err := e.connectionFiles(ctx, 1)
	if err != nil {
		return err
	}
	if err := e.createNamespace(ctx, clusterResourceNS); err != nil {
		return err
	}
	conn := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: clusterResourceNS, Name: "shared-connection"},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: files[0]},
	}
	if err := e.client.Create(ctx, conn); err != nil {
		return err
	}
	label := map[string]string{clusterLabel: "yes"}
	b.logf("[%s] creating %d selected namespaces", e.name, cr.N)
	err = parallel(ctx, cr.N, b.cfg.Concurrency, func(ctx context.Context, i int) error {
		return e.client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("shared-%05d", i), Labels: label}})
	})
	if err != nil {
		return err
	}
	if _, err := e.startManager("--cluster-resource-namespace=" + clusterResourceNS); err != nil {
		return err
	}

	start := time.Now()
	cc := &clearancev1alpha1.ClusterClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: clusterCredName},
		Spec: clearancev1alpha1.ClusterClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: conn.Name},
			SecretName:          clusterSecretName,
			NamespaceSelector:   &metav1.LabelSelector{MatchLabels: label},
		},
	}
	if err := e.client.Create(ctx, cc); err != nil {
		return err
	}
	st, err := e.waitClusterWritten(ctx, int32(cr.N), b.cfg.ReadyTime.D(), nil) //nolint:gosec // N is bounded by validate
	if err != nil {
		return err
	}
	cr.SecondsToAllWritten = time.Since(start).Seconds()
	b.logf("[%s] token written to %d namespaces in %s", e.name, cr.N, time.Since(start).Round(time.Millisecond))
	expires := st.ExpiresAt

	// New namespaces, one at a time: labelled, timed until the token is in.
	before, err := e.emu.stats(ctx)
	if err != nil {
		return err
	}
	ref := &corev1.Secret{}
	if err := e.client.Get(ctx, types.NamespacedName{Namespace: "shared-00000", Name: clusterSecretName}, ref); err != nil {
		return err
	}
	token := string(ref.Data[clearancev1alpha1.SecretKeyToken])
	for i := range clusterLabelled {
		ns := fmt.Sprintf("late-%02d", i)
		if err := e.createNamespace(ctx, ns); err != nil {
			return err
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		labelled := time.Now()
		patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"labels":{%q:"yes"}}}`, clusterLabel))
		if err := e.client.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, patch); err != nil {
			return err
		}
		for {
			s := &corev1.Secret{}
			err := e.client.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterSecretName}, s)
			if err == nil && string(s.Data[clearancev1alpha1.SecretKeyToken]) == token {
				break
			}
			if time.Since(labelled) > time.Minute {
				return fmt.Errorf("namespace %s labelled a minute ago holds no token", ns)
			}
			if err := sleep(ctx, 10*time.Millisecond); err != nil {
				return err
			}
		}
		cr.NewNamespaceSeconds = append(cr.NewNamespaceSeconds, time.Since(labelled).Seconds())

		// The floor: the harness copies the Secret itself.
		floorNS := fmt.Sprintf("floor-%02d", i)
		if err := e.createNamespace(ctx, floorNS); err != nil {
			return err
		}
		copyStart := time.Now()
		src := &corev1.Secret{}
		if err := e.client.Get(ctx, types.NamespacedName{Namespace: "shared-00000", Name: clusterSecretName}, src); err != nil {
			return err
		}
		if err := e.client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: floorNS, Name: clusterSecretName}, Data: src.Data}); err != nil {
			return err
		}
		cr.NewNamespaceFloorSeconds = append(cr.NewNamespaceFloorSeconds, time.Since(copyStart).Seconds())
	}
	after, err := e.emu.stats(ctx)
	if err != nil {
		return err
	}
	cr.TokenRequestsForNewNamespaces = after.TokenRequests - before.TokenRequests
	total := int32(cr.N + clusterLabelled) //nolint:gosec // bounded by validate

	// Renewals: each is one token request, written everywhere.
	b.logf("[%s] waiting for %d renewals (token lifetime %.0f s)", e.name, clusterRenewals, cr.TokenTTLSeconds)
	for cr.Renewals < clusterRenewals {
		st, err = e.waitClusterWritten(ctx, total, 3*time.Duration(cr.TokenTTLSeconds)*time.Second, expires)
		if err != nil {
			return err
		}
		expires = st.ExpiresAt
		cr.Renewals++
	}
	end, err := e.emu.stats(ctx)
	if err != nil {
		return err
	}
	cr.RenewalTokenRequests = end.TokenRequests - after.TokenRequests
	cr.TokenRequestsPerRenewal = float64(cr.RenewalTokenRequests) / float64(cr.Renewals)
	cr.WrittenAfterRenewals, cr.SelectedAfterRenewals = st.WrittenNamespaces, st.SelectedNamespaces
	return nil
}

// waitClusterWritten polls the cluster credential until it is Ready with
// want namespaces written, and, when after is set, a token expiring later.
func (e *env) waitClusterWritten(ctx context.Context, want int32, timeout time.Duration, after *metav1.Time) (*clearancev1alpha1.ClusterClearanceCredentialStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		cc := &clearancev1alpha1.ClusterClearanceCredential{}
		if err := e.client.Get(ctx, types.NamespacedName{Name: clusterCredName}, cc); err != nil {
			return nil, err
		}
		st := &cc.Status
		renewed := after == nil || (st.ExpiresAt != nil && st.ExpiresAt.After(after.Time))
		if st.WrittenNamespaces == want && st.ObservedGeneration == cc.Generation && renewed && st.ExpiresAt != nil {
			return st, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster credential: %d of %d namespaces written after %s (conditions %v)", st.WrittenNamespaces, want, timeout, st.Conditions)
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// median returns the median of xs (0 for none).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}
