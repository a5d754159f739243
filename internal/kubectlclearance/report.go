package kubectlclearance

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/tokeninfo"
)

// maxEvents is how many of a credential's latest events status shows.
const maxEvents = 10

// Report is what `status` shows of one credential, and its -o json|yaml
// form. It holds no token and no connection file content.
type Report struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace,omitempty"`
	Name       string `json:"name"`
	SecretName string `json:"secretName"`
	Suspended  bool   `json:"suspended,omitempty"`

	Conditions []metav1.Condition `json:"conditions,omitempty"`

	ExpiresAt     *Instant `json:"expiresAt,omitempty"`
	RenewalTime   *Instant `json:"renewalTime,omitempty"`
	TokenEndpoint string   `json:"tokenEndpoint,omitempty"`
	KeyID         string   `json:"keyID,omitempty"`

	FailedAttempts  int32    `json:"failedAttempts,omitempty"`
	LastFailureTime *Instant `json:"lastFailureTime,omitempty"`
	// NextAttempt is when the operator retries a failed request
	// (status.nextAttemptTime; status.renewalTime is empty while failing).
	NextAttempt *Instant `json:"nextAttempt,omitempty"`

	Target *TargetReport  `json:"target,omitempty"`
	Events []EventSummary `json:"events,omitempty"`
}

// Instant is a time with its distance from now, as status prints both.
type Instant struct {
	Time     time.Time `json:"time"`
	Relative string    `json:"relative"`
}

// TargetReport describes the target Secret without its token.
type TargetReport struct {
	// Error says why the Secret could not be read (not found, forbidden).
	Error string `json:"error,omitempty"`
	// Keys are the Secret's data keys.
	Keys []string `json:"keys,omitempty"`
	// Values holds the documented non-secret keys (expiresAt, tokenType, tenantId, clientId).
	Values map[string]string `json:"values,omitempty"`
	// TokenBytes is the token's length.
	TokenBytes int `json:"tokenBytes,omitempty"`
	// TokenSHA256 is the token's short fingerprint (tokeninfo.Fingerprint).
	TokenSHA256 string `json:"tokenSHA256,omitempty"`
	// Claims are the token's printable claims, decoded without verification.
	Claims []tokeninfo.Claim `json:"claims,omitempty"`
	// RefreshRequestedAt is the refresh request the stored token answered.
	RefreshRequestedAt string `json:"refreshRequestedAt,omitempty"`
}

// EventSummary is one event about the credential.
type EventSummary struct {
	Type     string    `json:"type"`
	Reason   string    `json:"reason"`
	Time     time.Time `json:"time"`
	Age      string    `json:"age"`
	Count    int32     `json:"count,omitempty"`
	Message  string    `json:"message"`
	Reporter string    `json:"reporter,omitempty"`
}

// nonSecretKeys are target Secret keys whose values are safe to show.
var nonSecretKeys = map[string]bool{
	clearancev1alpha1.SecretKeyExpiresAt: true,
	clearancev1alpha1.SecretKeyTokenType: true,
	clearancev1alpha1.SecretKeyTenantID:  true,
	clearancev1alpha1.SecretKeyClientID:  true,
}

func instant(t *metav1.Time, now time.Time) *Instant {
	if t == nil {
		return nil
	}
	return &Instant{Time: t.UTC(), Relative: relative(t.Time, now)}
}

// credentialReport summarises the credential's own object: the status
// fields, without the reads of the Secret and the events.
func credentialReport(cred credential, now time.Time) *Report {
	st := cred.Status
	r := &Report{
		Kind: cred.Kind, Namespace: cred.Object.GetNamespace(), Name: cred.Object.GetName(),
		SecretName: cred.SecretName, Suspended: cred.Suspend,
		Conditions:    st.Conditions,
		ExpiresAt:     instant(st.ExpiresAt, now),
		RenewalTime:   instant(st.RenewalTime, now),
		TokenEndpoint: st.TokenEndpoint, KeyID: st.KeyID,
		FailedAttempts: st.FailedAttempts, LastFailureTime: instant(st.LastFailureTime, now),
		NextAttempt: instant(st.NextAttemptTime, now),
	}
	return r
}

// describe reads the credential's target Secret and events into r. A read
// that fails is reported in r, not as an error: the status is still useful.
func describe(ctx context.Context, c client.Client, cred credential, r *Report, now time.Time) {
	r.Target = targetReport(ctx, c, cred.TargetNamespace, cred.SecretName)
	r.Events = credentialEvents(ctx, c, cred, now)
}

func targetReport(ctx context.Context, c client.Client, namespace, name string) *TargetReport {
	secret := &corev1.Secret{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, secret); err != nil {
		if apierrors.IsNotFound(err) {
			return &TargetReport{Error: fmt.Sprintf("Secret %q not found", name)}
		}
		return &TargetReport{Error: err.Error()}
	}
	return secretReport(secret)
}

// secretReport shows the keys, the documented non-secret values, and the
// token only as length, fingerprint and claims. Any other key's value (an
// extra the operator copies, or something a user added) is not shown.
func secretReport(secret *corev1.Secret) *TargetReport {
	t := &TargetReport{RefreshRequestedAt: secret.Annotations[clearancev1alpha1.RefreshRequestedAtAnnotation]}
	for k, v := range secret.Data {
		t.Keys = append(t.Keys, k)
		if nonSecretKeys[k] {
			if t.Values == nil {
				t.Values = map[string]string{}
			}
			t.Values[k] = string(v)
		}
	}
	sort.Strings(t.Keys)
	if token := secret.Data[clearancev1alpha1.SecretKeyToken]; len(token) > 0 {
		t.TokenBytes = len(token)
		t.TokenSHA256 = tokeninfo.Fingerprint(token)
		t.Claims = tokeninfo.Claims(string(token))
	}
	return t
}

// eventUIDField selects a credential's events on the server (kubectl
// describe selects the same way).
const eventUIDField = "involvedObject.uid"

// A cluster-scoped object's events are in any namespace ("" lists them all).
func credentialEvents(ctx context.Context, c client.Client, cred credential, now time.Time) []EventSummary {
	uid := cred.Object.GetUID()
	list := &corev1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(cred.Object.GetNamespace()),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector(eventUIDField, string(uid))}); err != nil {
		return []EventSummary{{Type: "Unknown", Reason: "EventsUnavailable", Time: now, Message: err.Error()}}
	}
	out := make([]EventSummary, 0, len(list.Items))
	for i := range list.Items {
		e := &list.Items[i]
		if e.InvolvedObject.UID != uid {
			continue
		}
		t := eventTime(e)
		reporter := e.ReportingController
		if reporter == "" {
			reporter = e.Source.Component
		}
		count := e.Count
		if e.Series != nil {
			count = e.Series.Count
		}
		out = append(out, EventSummary{
			Type: e.Type, Reason: e.Reason, Time: t.UTC(), Age: relative(t, now), Count: count,
			Message: e.Message, Reporter: reporter,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	if len(out) > maxEvents {
		out = out[len(out)-maxEvents:]
	}
	return out
}

// eventTime is the latest time an event carries: events.k8s.io events set
// eventTime and series, core events lastTimestamp.
func eventTime(e *corev1.Event) time.Time {
	t := e.CreationTimestamp.Time
	for _, c := range []time.Time{e.FirstTimestamp.Time, e.LastTimestamp.Time, e.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	return t
}

// readyCondition returns the Ready condition, or nil.
func readyCondition(r *Report) *metav1.Condition {
	return meta.FindStatusCondition(r.Conditions, clearancev1alpha1.ConditionReady)
}
