package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
)

// Token request outcomes, the values of the outcome label.
const (
	outcomeSuccess     = "success"
	outcomeRejected    = "rejected"
	outcomeRateLimited = "rate_limited"
	outcomeTransient   = "transient"
)

// Metrics are registered with controller-runtime's registry, so they are served
// on the manager's secure metrics endpoint next to the controller metrics.
// Labels hold only namespace and name: never anything from the token or the
// connection file.
var (
	tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_token_requests_total",
		Help: "Token requests to the Clearance STS by outcome (success, rejected, rate_limited, transient).",
	}, []string{"outcome"})
	tokenRequestDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "clearance_token_request_duration_seconds",
		Help:    "Duration of token requests to the Clearance STS, failover included.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	})
	credentialMetrics = &statusCollector{
		descs:   []*prometheus.Desc{credentialReadyDesc, tokenExpirationDesc, tokenRenewalDesc},
		collect: collectCredentials,
	}
)

func init() {
	metrics.Registry.MustRegister(tokenRequests, tokenRequestDuration, credentialMetrics)
	for _, o := range []string{outcomeSuccess, outcomeRejected, outcomeRateLimited, outcomeTransient} {
		tokenRequests.WithLabelValues(o)
	}
}

var (
	credentialReadyDesc = prometheus.NewDesc("clearance_credential_ready",
		"1 when the credential's target Secret holds a valid token, else 0.", []string{"namespace", "name"}, nil)
	tokenExpirationDesc = prometheus.NewDesc("clearance_token_expiration_timestamp_seconds",
		"Expiry of the token stored in the credential's target Secret (Unix seconds).", []string{"namespace", "name"}, nil)
	tokenRenewalDesc = prometheus.NewDesc("clearance_token_renewal_timestamp_seconds",
		"When the credential's token is scheduled to be renewed (Unix seconds).", []string{"namespace", "name"}, nil)
)

// credentialListTimeout bounds a scrape's read of the informer cache (it
// only waits when the cache has not synced yet).
const credentialListTimeout = 5 * time.Second

// statusCollector derives per-object series at scrape time from the
// objects' status in the informer cache, like kube-state-metrics does: the
// status already says all of it, so nothing is held per object, and a
// deleted object's series disappear with it.
type statusCollector struct {
	descs []*prometheus.Desc
	// collect lists the objects through the reader and sends their series.
	collect func(ctx context.Context, reader client.Reader, ch chan<- prometheus.Metric) error

	mu     sync.RWMutex
	reader client.Reader
}

// setReader points the collector at the manager's cache.
func (c *statusCollector) setReader(r client.Reader) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reader = r
}

// Describe implements prometheus.Collector.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Until the cache can answer there
// are no series: a failed scrape would hide the other metrics.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.RLock()
	reader := c.reader
	c.mu.RUnlock()
	if reader == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), credentialListTimeout)
	defer cancel()
	_ = c.collect(ctx, reader, ch)
}

// collectCredentials sends the ClearanceCredentials' series.
func collectCredentials(ctx context.Context, reader client.Reader, ch chan<- prometheus.Metric) error {
	list := &clearancev1alpha1.ClearanceCredentialList{}
	// Read-only use of the cached objects: no copy of 10,000 of them per scrape.
	if err := reader.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		cred := &list.Items[i]
		ch <- prometheus.MustNewConstMetric(credentialReadyDesc, prometheus.GaugeValue, readyValue(cred.Status.Conditions), cred.Namespace, cred.Name)
		if t := cred.Status.ExpiresAt; t != nil {
			ch <- prometheus.MustNewConstMetric(tokenExpirationDesc, prometheus.GaugeValue, unixSeconds(t), cred.Namespace, cred.Name)
		}
		if t := cred.Status.RenewalTime; t != nil {
			ch <- prometheus.MustNewConstMetric(tokenRenewalDesc, prometheus.GaugeValue, unixSeconds(t), cred.Namespace, cred.Name)
		}
	}
	return nil
}

// readyValue is 1 when the Ready condition is True, else 0.
func readyValue(conditions []metav1.Condition) float64 {
	if meta.IsStatusConditionTrue(conditions, clearancev1alpha1.ConditionReady) {
		return 1
	}
	return 0
}

func unixSeconds(t *metav1.Time) float64 { return float64(t.Unix()) }
