package controller

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// The cluster credentials' series, a family of their own: they have a name
// and no namespace. Like the ClearanceCredentials' they are derived from the
// status at scrape time.
var (
	clusterCredentialReadyDesc = prometheus.NewDesc("clearance_cluster_credential_ready",
		"1 when the cluster credential's token is valid, else 0.", []string{"name"}, nil)
	clusterTokenExpirationDesc = prometheus.NewDesc("clearance_cluster_token_expiration_timestamp_seconds",
		"Expiry of the cluster credential's token (Unix seconds).", []string{"name"}, nil)
	clusterTokenRenewalDesc = prometheus.NewDesc("clearance_cluster_token_renewal_timestamp_seconds",
		"When the cluster credential's token is scheduled to be renewed (Unix seconds).", []string{"name"}, nil)
	clusterSelectedDesc = prometheus.NewDesc("clearance_cluster_credential_selected_namespaces",
		"Namespaces the cluster credential selects.", []string{"name"}, nil)
	clusterWrittenDesc = prometheus.NewDesc("clearance_cluster_credential_written_namespaces",
		"Selected namespaces whose target Secret holds the current token.", []string{"name"}, nil)
	clusterConflictingDesc = prometheus.NewDesc("clearance_cluster_credential_conflicting_namespaces",
		"Selected namespaces where a Secret of the target name is not controlled by the cluster credential.", []string{"name"}, nil)

	clusterCredentialMetrics = &statusCollector{
		descs: []*prometheus.Desc{clusterCredentialReadyDesc, clusterTokenExpirationDesc, clusterTokenRenewalDesc,
			clusterSelectedDesc, clusterWrittenDesc, clusterConflictingDesc},
		collect: collectClusterCredentials,
	}
)

func init() {
	metrics.Registry.MustRegister(clusterCredentialMetrics)
}

// collectClusterCredentials sends the cluster credentials' series.
func collectClusterCredentials(ctx context.Context, reader client.Reader, ch chan<- prometheus.Metric) error {
	list := &clearancev1alpha1.ClusterClearanceCredentialList{}
	if err := reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		cc := &list.Items[i]
		ch <- prometheus.MustNewConstMetric(clusterCredentialReadyDesc, prometheus.GaugeValue, readyValue(cc.Status.Conditions), cc.Name)
		if t := cc.Status.ExpiresAt; t != nil {
			ch <- prometheus.MustNewConstMetric(clusterTokenExpirationDesc, prometheus.GaugeValue, unixSeconds(t), cc.Name)
		}
		if t := cc.Status.RenewalTime; t != nil {
			ch <- prometheus.MustNewConstMetric(clusterTokenRenewalDesc, prometheus.GaugeValue, unixSeconds(t), cc.Name)
		}
		ch <- prometheus.MustNewConstMetric(clusterSelectedDesc, prometheus.GaugeValue, float64(cc.Status.SelectedNamespaces), cc.Name)
		ch <- prometheus.MustNewConstMetric(clusterWrittenDesc, prometheus.GaugeValue, float64(cc.Status.WrittenNamespaces), cc.Name)
		ch <- prometheus.MustNewConstMetric(clusterConflictingDesc, prometheus.GaugeValue, float64(cc.Status.ConflictingNamespaceCount), cc.Name)
	}
	return nil
}
