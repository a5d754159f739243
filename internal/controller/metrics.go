package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
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
	tokenExpiration = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_token_expiration_timestamp_seconds",
		Help: "Expiry of the token stored in the credential's target Secret (Unix seconds).",
	}, []string{"namespace", "name"})
	tokenRenewal = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_token_renewal_timestamp_seconds",
		Help: "When the credential's token is scheduled to be renewed (Unix seconds).",
	}, []string{"namespace", "name"})
	tokenRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "clearance_token_requests_total",
		Help: "Token requests to the Clearance STS by outcome (success, rejected, rate_limited, transient).",
	}, []string{"outcome"})
	tokenRequestDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "clearance_token_request_duration_seconds",
		Help:    "Duration of token requests to the Clearance STS, failover included.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	})
	credentialReady = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "clearance_credential_ready",
		Help: "1 when the credential's target Secret holds a valid token, else 0.",
	}, []string{"namespace", "name"})
)

func init() {
	metrics.Registry.MustRegister(tokenExpiration, tokenRenewal, tokenRequests, tokenRequestDuration, credentialReady)
	for _, o := range []string{outcomeSuccess, outcomeRejected, outcomeRateLimited, outcomeTransient} {
		tokenRequests.WithLabelValues(o)
	}
}

// forgetMetrics removes a deleted credential's series.
func forgetMetrics(namespace, name string) {
	tokenExpiration.DeleteLabelValues(namespace, name)
	tokenRenewal.DeleteLabelValues(namespace, name)
	credentialReady.DeleteLabelValues(namespace, name)
}
