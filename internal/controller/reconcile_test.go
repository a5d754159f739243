package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/clearance/clearancetest"
)

// The tests in this file drive Reconcile, and only Reconcile, against a fake
// API server and a fake clock: what they assert is what a user sees (the
// credential's status, the target Secret, the events, the token requests),
// so they hold across any rework of the reconciler's insides.

const (
	testNamespace  = "tenant"
	testCredential = "cred"
	testConnection = "conn"
	testTarget     = "token"
	// testTokenTTL is the lifetime of every token the fake minter issues.
	testTokenTTL = time.Hour
	// testMinForcedMintInterval is the reconciler's MinForcedMintInterval.
	testMinForcedMintInterval = 30 * time.Second
)

// testStart is the fake clock's start, on a whole second as status times are.
var testStart = time.Date(2030, 6, 1, 8, 0, 0, 0, time.UTC)

// newTestReconciler is the one place these tests build a reconciler. cached
// is the manager's cached client, apiReader the direct reader,
// secretMetadata the metadata-only view of the Secrets the operator does not
// manage.
//
// The renewal spread is 0, so a renewal carries at most the 10% jitter of
// scheduled renewals (derived from the credential's UID): the tests' bounds
// hold whatever the jitter.
func newTestReconciler(cached client.Client, apiReader, secretMetadata client.Reader, minter Minter, recorder events.EventRecorder, clk clock.PassiveClock) *ClearanceCredentialReconciler {
	return newReconciler(cached, apiReader, secretMetadata, recorder, Options{
		Minter: minter, Clock: clk, MinForcedMintInterval: testMinForcedMintInterval,
	}.withDefaults())
}

// harness runs one ClearanceCredential ("cred" in namespace "tenant", with
// connection Secret "conn" and target Secret "token") through Reconcile.
//
// Views of one fake API server (controller-runtime's fake client, with
// server-side apply and the credential's status subresource) stand in for
// the manager's:
//   - store is the API server as the tests see it: they arrange and inspect
//     objects through it, and no fault touches it;
//   - the reconciler's direct reader (APIReader) and writes go through the
//     same server with the faults the tests inject (failStatusWrites,
//     failSecretWrites);
//   - its cached client serves Secrets as the manager's cache does (only the
//     managed ones, through the cache transform of ManagedSecretsCacheOptions),
//     and its metadata reader serves only the other Secrets, as
//     NewSecretMetadataCache does.
//
// The cache views are never behind, except where a test hides the target
// Secret from the cache (targetNotCached); how real caches lag is for the
// envtest suite.
type harness struct {
	t        *testing.T
	ctx      context.Context
	store    client.WithWatch
	clock    *clocktesting.FakeClock
	minter   *fakeMinter
	recorder *events.FakeRecorder
	r        *ClearanceCredentialReconciler
	// apiserver, cached and metadata are the reconciler's views (see above),
	// kept to build another reconciler, as after a restart.
	apiserver client.WithWatch
	cached    client.Client
	metadata  client.Reader
	// failStatusWrites is how many of the next status writes the API
	// server refuses with a Conflict.
	failStatusWrites int
	// failSecretWrites is how many of the next Secret writes (create, apply,
	// patch or update) the API server refuses as unavailable.
	failSecretWrites int
	// targetNotCached: the cached client has not seen the target Secrets
	// (testTarget, in any namespace) yet, as when its informer lags behind
	// the reconciler's own create.
	targetNotCached bool
}

// newHarness creates the connection Secret and the credential (after the
// mutators) and a reconciler that has not reconciled yet.
func newHarness(t *testing.T, mutate ...func(*clearancev1alpha1.ClearanceCredential)) *harness {
	t.Helper()
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(clearancev1alpha1.AddToScheme(s))

	h := &harness{
		t:        t,
		ctx:      context.Background(),
		clock:    clocktesting.NewFakeClock(testStart),
		recorder: events.NewFakeRecorder(100),
	}
	h.minter = &fakeMinter{clock: h.clock}
	h.store = fake.NewClientBuilder().
		WithScheme(s).
		WithStatusSubresource(&clearancev1alpha1.ClearanceCredential{}, &clearancev1alpha1.ClusterClearanceCredential{}).
		Build()
	h.apiserver = interceptor.NewClient(h.store, interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			if err := h.statusWriteFault(sub); err != nil {
				return err
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			if err := h.statusWriteFault(sub); err != nil {
				return err
			}
			return c.SubResource(sub).Update(ctx, obj, opts...)
		},
		SubResourceApply: func(ctx context.Context, c client.Client, sub string, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
			if err := h.statusWriteFault(sub); err != nil {
				return err
			}
			return c.SubResource(sub).Apply(ctx, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := h.secretWriteFault(obj); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := h.secretWriteFault(obj); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := h.secretWriteFault(obj); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if err := h.secretWriteFault(obj); err != nil {
				return err
			}
			return c.Apply(ctx, obj, opts...)
		},
	})
	h.cached = managedSecretCacheView(t, h.apiserver, func(key client.ObjectKey) bool {
		return h.targetNotCached && key.Name == testTarget
	})
	h.metadata = unmanagedSecretMetadataView(h.apiserver)
	h.r = h.newReconciler()

	h.create(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: testConnection, Namespace: testNamespace, UID: "conn-uid"},
		Data:       map[string][]byte{clearancev1alpha1.DefaultConnectionSecretKey: testConnectionFiles(t)[0]},
	})
	cred := &clearancev1alpha1.ClearanceCredential{
		ObjectMeta: metav1.ObjectMeta{Name: testCredential, Namespace: testNamespace, UID: "cred-uid", Generation: 1},
		Spec: clearancev1alpha1.ClearanceCredentialSpec{
			ConnectionSecretRef: clearancev1alpha1.SecretKeyRef{Name: testConnection, Key: clearancev1alpha1.DefaultConnectionSecretKey},
			SecretName:          testTarget,
		},
	}
	for _, m := range mutate {
		m(cred)
	}
	h.create(cred)
	return h
}

// newReconciler builds another reconciler on the same API server, clock,
// minter and recorder: a restarted operator.
func (h *harness) newReconciler() *ClearanceCredentialReconciler {
	return newTestReconciler(h.cached, h.apiserver, h.metadata, h.minter, h.recorder, h.clock)
}

// statusWriteFault refuses a write of the credential's status (patch,
// update or apply) with a Conflict while failStatusWrites lasts.
func (h *harness) statusWriteFault(sub string) error {
	if sub != "status" || h.failStatusWrites == 0 {
		return nil
	}
	h.failStatusWrites--
	return apierrors.NewConflict(clearancev1alpha1.GroupVersion.WithResource("clearancecredentials").GroupResource(), testCredential,
		fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
}

// secretWriteFault refuses a write of a Secret while failSecretWrites lasts.
func (h *harness) secretWriteFault(obj any) error {
	switch obj.(type) {
	case *corev1.Secret, *corev1ac.SecretApplyConfiguration:
		if h.failSecretWrites > 0 {
			h.failSecretWrites--
			return apierrors.NewServiceUnavailable("injected: the API server refuses the Secret write")
		}
	}
	return nil
}

// managedSecretCacheView serves Secrets as the manager's cache does: only
// those its label selector admits, through its transform (both taken from
// ManagedSecretsCacheOptions, so the view follows it), and none that
// notSeen names.
func managedSecretCacheView(t *testing.T, api client.WithWatch, notSeen func(client.ObjectKey) bool) client.Client {
	t.Helper()
	var secrets *cache.ByObject
	for obj, by := range ManagedSecretsCacheOptions(cache.Options{}).ByObject {
		if _, ok := obj.(*corev1.Secret); ok {
			secrets = &by
		}
	}
	if secrets == nil {
		t.Fatal("ManagedSecretsCacheOptions has no Secret options")
	}
	// cached returns the Secret as the cache holds it, or false when the cache has none.
	cached := func(s *corev1.Secret) (bool, error) {
		if notSeen(client.ObjectKeyFromObject(s)) || secrets.Label != nil && !secrets.Label.Matches(labels.Set(s.Labels)) {
			return false, nil
		}
		if secrets.Transform == nil {
			return true, nil
		}
		out, err := secrets.Transform(s)
		if err != nil {
			return false, err
		}
		*s = *out.(*corev1.Secret)
		return true, nil
	}
	return interceptor.NewClient(api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			s, ok := obj.(*corev1.Secret)
			if !ok {
				return nil
			}
			found, err := cached(s)
			if err == nil && !found {
				err = apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
			}
			return err
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if err := c.List(ctx, list, opts...); err != nil {
				return err
			}
			l, ok := list.(*corev1.SecretList)
			if !ok {
				return nil
			}
			kept := l.Items[:0]
			for i := range l.Items {
				found, err := cached(&l.Items[i])
				if err != nil {
					return err
				}
				if found {
					kept = append(kept, l.Items[i])
				}
			}
			l.Items = kept
			return nil
		},
	})
}

// unmanagedSecretMetadataView serves the metadata of the Secrets the
// operator does not manage, as NewSecretMetadataCache does.
func unmanagedSecretMetadataView(api client.WithWatch) client.Reader {
	return interceptor.NewClient(api, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			if obj.GetLabels()[clearancev1alpha1.ManagedByLabel] == clearancev1alpha1.ManagedByValue {
				return apierrors.NewNotFound(corev1.Resource("secrets"), key.Name)
			}
			return nil
		},
	})
}

var (
	connectionFilesOnce sync.Once
	connectionFiles     [2][]byte
	connectionFilesErr  error
)

// testConnectionFiles returns two valid connection files (different service
// principals, one key), made once per test binary by the emulator's
// generator. The emulator is closed at once: the fake minter never calls it.
func testConnectionFiles(t *testing.T) [2][]byte {
	t.Helper()
	connectionFilesOnce.Do(func() {
		srv, err := clearancetest.NewServer()
		if err != nil {
			connectionFilesErr = err
			return
		}
		defer srv.Close()
		first, err := srv.NewConnectionFile()
		if err != nil {
			connectionFilesErr = err
			return
		}
		second, err := srv.NewConnectionFileWithKey(first.PrivateKey)
		if err != nil {
			connectionFilesErr = err
			return
		}
		connectionFiles = [2][]byte{first.Data, second.Data}
	})
	if connectionFilesErr != nil {
		t.Fatalf("generating connection files: %v", connectionFilesErr)
	}
	return connectionFiles
}

// fakeMinter issues testTokenTTL tokens stamped by the fake clock, or fails
// with err while it is set, and counts the token requests.
type fakeMinter struct {
	clock clock.PassiveClock
	err   error
	calls int
}

// LoadConnectionFile parses with the real parser.
func (m *fakeMinter) LoadConnectionFile(data []byte) (*clearance.ConnectionFile, error) {
	return clearance.ParseConnectionFile(data)
}

// Mint returns "token-<n>" for the n-th request, or err.
func (m *fakeMinter) Mint(_ context.Context, req clearance.MintRequest) (*clearance.Token, error) {
	m.calls++
	if req.Connection == nil {
		return nil, fmt.Errorf("mint without a connection file")
	}
	if m.err != nil {
		return nil, m.err
	}
	now := m.clock.Now()
	return &clearance.Token{
		AccessToken: fmt.Sprintf("token-%d", m.calls),
		TokenType:   "Bearer",
		IssuedAt:    now,
		ExpiresAt:   now.Add(testTokenTTL),
		Endpoint:    req.Connection.STSBaseAddresses[0] + "/connect/token",
		KeyID:       req.Connection.KeyID,
	}, nil
}

// Errors the fake minter can be set to return.
var (
	errSTSDown  = &clearance.TransientError{Endpoint: "https://sts.example/connect/token", StatusCode: 503, Reason: "service unavailable"}
	errRejected = &clearance.RejectedError{Endpoint: "https://sts.example/connect/token", StatusCode: 401, Code: "invalid_client"}
)

func rateLimited(retryAfter time.Duration) error {
	return &clearance.RateLimitedError{Endpoint: "https://sts.example/connect/token", RetryAfter: retryAfter}
}

func (h *harness) create(obj client.Object) {
	h.t.Helper()
	if err := h.store.Create(h.ctx, obj); err != nil {
		h.t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// reconcile runs one Reconcile of the credential.
func (h *harness) reconcile() (ctrl.Result, error) {
	return h.r.Reconcile(h.ctx, ctrl.Request{NamespacedName: types.NamespacedName{Namespace: testNamespace, Name: testCredential}})
}

// mustReconcile runs one Reconcile and fails the test on an error.
func (h *harness) mustReconcile() ctrl.Result {
	h.t.Helper()
	res, err := h.reconcile()
	if err != nil {
		h.t.Fatalf("Reconcile: %v", err)
	}
	return res
}

// credential reads the credential from the API server.
func (h *harness) credential() *clearancev1alpha1.ClearanceCredential {
	h.t.Helper()
	c := &clearancev1alpha1.ClearanceCredential{}
	if err := h.store.Get(h.ctx, types.NamespacedName{Namespace: testNamespace, Name: testCredential}, c); err != nil {
		h.t.Fatalf("reading the credential: %v", err)
	}
	return c
}

// updateCredential changes the credential's metadata or spec.
func (h *harness) updateCredential(mutate func(*clearancev1alpha1.ClearanceCredential)) {
	h.t.Helper()
	c := h.credential()
	mutate(c)
	if err := h.store.Update(h.ctx, c); err != nil {
		h.t.Fatalf("updating the credential: %v", err)
	}
}

// secret reads a Secret in full from the API server; nil when absent.
func (h *harness) secret(name string) *corev1.Secret {
	h.t.Helper()
	s := &corev1.Secret{}
	err := h.store.Get(h.ctx, types.NamespacedName{Namespace: testNamespace, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		h.t.Fatalf("reading Secret %s: %v", name, err)
	}
	return s
}

// token is the access token in the target Secret ("" when there is none).
func (h *harness) token() string {
	h.t.Helper()
	if s := h.secret(testTarget); s != nil {
		return string(s.Data[clearancev1alpha1.SecretKeyToken])
	}
	return ""
}

// conditions returns the credential's conditions by type.
func (h *harness) conditions() map[string]metav1.Condition {
	h.t.Helper()
	out := map[string]metav1.Condition{}
	for _, c := range h.credential().Status.Conditions {
		out[c.Type] = c
	}
	return out
}

// events returns "<type> <reason>" of each event recorded since the last call.
func (h *harness) events() []string {
	var out []string
	for {
		select {
		case e := <-h.recorder.Events:
			f := strings.Fields(e)
			if len(f) >= 2 {
				out = append(out, f[0]+" "+f[1])
			} else {
				out = append(out, e)
			}
		default:
			return out
		}
	}
}

// mintFirst reconciles a new credential into a stored token and returns the
// result, checking only that it worked (TestReconcileNewCredential checks
// the rest).
func (h *harness) mintFirst() ctrl.Result {
	h.t.Helper()
	res := h.mustReconcile()
	if h.minter.calls != 1 || h.token() != "token-1" {
		h.t.Fatalf("first reconcile: %d mints, token %q; want 1 mint, token-1", h.minter.calls, h.token())
	}
	h.events()
	return res
}

// renewalTime is status.renewalTime (failing the test when unset).
func (h *harness) renewalTime() time.Time {
	h.t.Helper()
	rt := h.credential().Status.RenewalTime
	if rt == nil {
		h.t.Fatal("status.renewalTime is not set")
	}
	return rt.Time
}

// advanceTo sets the fake clock to at.
func (h *harness) advanceTo(at time.Time) { h.clock.SetTime(at) }

// haveCond matches a condition's status and reason.
func haveCond(status metav1.ConditionStatus, reason string) OmegaMatcher {
	return And(HaveField("Status", status), HaveField("Reason", reason))
}

// renewalBounds are the earliest and latest renewal time of a token issued
// at issued: a third of the lifetime before expiry, less up to 10% of the
// lifetime of jitter.
func renewalBounds(issued time.Time) (earliest, latest time.Time) {
	latest = issued.Add(testTokenTTL - testTokenTTL/3)
	return latest.Add(-testTokenTTL / 10), latest
}

func TestReconcileNewCredential(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)

	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(1), "token requests")
	s := h.secret(testTarget)
	g.Expect(s).NotTo(BeNil(), "target Secret")
	g.Expect(s.Data).To(HaveKeyWithValue(clearancev1alpha1.SecretKeyToken, []byte("token-1")))
	g.Expect(s.Data).To(HaveKeyWithValue(clearancev1alpha1.SecretKeyTokenType, []byte("Bearer")))
	expires := testStart.Add(testTokenTTL)
	g.Expect(s.Data).To(HaveKeyWithValue(clearancev1alpha1.SecretKeyExpiresAt, []byte(expires.Format(time.RFC3339))))
	g.Expect(s.Annotations).To(HaveKeyWithValue(clearancev1alpha1.ExpiresAtAnnotation, expires.Format(time.RFC3339)))
	g.Expect(s.Labels).To(HaveKeyWithValue(clearancev1alpha1.ManagedByLabel, clearancev1alpha1.ManagedByValue))
	g.Expect(s.Type).To(Equal(corev1.SecretTypeOpaque))
	owner := metav1.GetControllerOf(s)
	g.Expect(owner).NotTo(BeNil(), "controller reference")
	g.Expect(*owner).To(And(HaveField("Kind", "ClearanceCredential"), HaveField("Name", testCredential), HaveField("UID", types.UID("cred-uid"))))

	cred := h.credential()
	st := cred.Status
	g.Expect(st.ExpiresAt).NotTo(BeNil())
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", expires))
	earliest, latest := renewalBounds(testStart)
	g.Expect(h.renewalTime()).To(And(BeTemporally(">=", earliest), BeTemporally("<=", latest)))
	g.Expect(st.FailedAttempts).To(BeZero())
	g.Expect(st.LastFailureTime).To(BeNil())
	g.Expect(st.LastRequestTime).NotTo(BeNil())
	g.Expect(st.LastRequestTime.Time).To(BeTemporally("==", testStart))
	g.Expect(st.ObservedGeneration).To(Equal(cred.Generation))

	conds := h.conditions()
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionReconciling))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionStalled))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionDegraded))

	g.Expect(res.RequeueAfter).To(BeNumerically("~", h.renewalTime().Sub(testStart), time.Second), "requeue at the renewal time")
	g.Expect(h.events()).To(Equal([]string{"Normal " + EventMinted}))
}

func TestReconcileRenewalNotDue(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()
	renewal := h.renewalTime()

	now := testStart.Add(5 * time.Minute)
	h.advanceTo(now)
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(1), "no new token request")
	h.expectFirstTokenStands(g, res, renewal, now)
}

// expectFirstTokenStands checks a reconcile at now that found the first
// token current: the same token, schedule and Ready condition, a requeue at
// its renewal, no event.
func (h *harness) expectFirstTokenStands(g Gomega, res ctrl.Result, renewal, now time.Time) {
	g.Expect(h.token()).To(Equal("token-1"))
	g.Expect(h.renewalTime()).To(BeTemporally("==", renewal), "the schedule stands")
	g.Expect(res.RequeueAfter).To(BeNumerically("~", renewal.Sub(now), time.Second))
	g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(h.events()).To(BeEmpty())
}

// TestReconcileCacheBehindOwnWrite: a reconcile whose cache has not seen
// the Secret the previous one created (the status write's own event can
// come first) does not request a second token; a target that is really
// gone is minted again.
func TestReconcileCacheBehindOwnWrite(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()
	renewal := h.renewalTime()
	h.targetNotCached = true

	now := testStart.Add(time.Second)
	h.advanceTo(now)
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(1), "no second token request")
	h.expectFirstTokenStands(g, res, renewal, now)

	g.Expect(h.store.Delete(h.ctx, h.secret(testTarget))).To(Succeed())
	h.mustReconcile()
	g.Expect(h.minter.calls).To(Equal(2), "a deleted target is minted again")
	g.Expect(h.token()).To(Equal("token-2"))
}

// TestReconcileRestartResumes: a new reconciler (a restarted operator, or
// a new leader) resumes from the stored token without a token request.
func TestReconcileRestartResumes(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()
	renewal := h.renewalTime()

	h.r = h.newReconciler()
	now := testStart.Add(time.Minute)
	h.advanceTo(now)
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(1), "no re-mint on restart")
	h.expectFirstTokenStands(g, res, renewal, now)
}

func TestReconcileRenewalDue(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()

	now := h.renewalTime().Add(time.Second)
	h.advanceTo(now)
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(2), "one renewal")
	g.Expect(h.token()).To(Equal("token-2"))
	st := h.credential().Status
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", now.Add(testTokenTTL)))
	earliest, latest := renewalBounds(now)
	g.Expect(h.renewalTime()).To(And(BeTemporally(">=", earliest), BeTemporally("<=", latest)))
	g.Expect(res.RequeueAfter).To(BeNumerically("~", h.renewalTime().Sub(now), time.Second))
	g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(h.events()).To(Equal([]string{"Normal " + EventRenewed}))
}

// TestReconcileSTSDownWithValidToken: a failing renewal keeps the stored
// token, says so, and backs off; the backoff holds against reconciles that
// TestReconcileBackoffSurvivesRestart: the retry schedule is in the status,
// so a restarted operator keeps the backoff (here the hourly safety retry
// after a rejection) instead of retrying at once.
func TestReconcileBackoffSurvivesRestart(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.minter.err = errRejected
	h.mustReconcile()
	g.Expect(h.minter.calls).To(Equal(1))

	h.r = h.newReconciler()
	h.advanceTo(testStart.Add(time.Minute))
	res := h.mustReconcile()
	g.Expect(h.minter.calls).To(Equal(1), "no request before the retry time after a restart")
	g.Expect(res.RequeueAfter).To(And(BeNumerically(">", RejectedRetryInterval-2*time.Minute), BeNumerically("<=", RejectedRetryInterval-time.Minute)))
	g.Expect(h.credential().Status.NextAttemptTime.Time).To(BeTemporally("==", testStart.Add(RejectedRetryInterval)))
}

// other events bring, and the next success clears the failure.
func TestReconcileSTSDownWithValidToken(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()
	expires := h.credential().Status.ExpiresAt.Time

	now := h.renewalTime()
	h.advanceTo(now)
	h.minter.err = errSTSDown
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(2), "one failed renewal attempt")
	g.Expect(h.token()).To(Equal("token-1"), "the stored token is kept")
	st := h.credential().Status
	g.Expect(st.FailedAttempts).To(BeEquivalentTo(1))
	g.Expect(st.LastFailureTime).NotTo(BeNil())
	g.Expect(st.LastFailureTime.Time).To(BeTemporally("==", now))
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", expires))
	conds := h.conditions()
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionDegraded, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable)))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionStalled))
	g.Expect(res.RequeueAfter).To(And(BeNumerically(">=", BackoffBase/2), BeNumerically("<=", BackoffBase)), "first backoff")
	g.Expect(res.RequeueAfter).To(BeNumerically("<=", expires.Sub(now)/2), "at most half the time left")
	g.Expect(h.events()).To(Equal([]string{"Warning " + EventMintFailed}))

	// An unrelated change brings the credential back before the retry time.
	h.advanceTo(now.Add(100 * time.Millisecond))
	h.updateCredential(func(c *clearancev1alpha1.ClearanceCredential) {
		c.Annotations = map[string]string{"example.com/unrelated": "edit"}
	})
	early, err := h.reconcile()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(h.minter.calls).To(Equal(2), "no token request before the retry time")
	g.Expect(early.RequeueAfter).To(And(BeNumerically(">", 0), BeNumerically("<=", res.RequeueAfter)), "requeue at the retry time")
	g.Expect(h.credential().Status.FailedAttempts).To(BeEquivalentTo(1))

	// At the retry time it tries again, and backs off further.
	now = now.Add(res.RequeueAfter)
	h.advanceTo(now)
	res = h.mustReconcile()
	g.Expect(h.minter.calls).To(Equal(3), "the retry")
	g.Expect(h.credential().Status.FailedAttempts).To(BeEquivalentTo(2))
	g.Expect(res.RequeueAfter).To(And(BeNumerically(">=", BackoffBase), BeNumerically("<=", 2*BackoffBase)), "second backoff")
	g.Expect(h.token()).To(Equal("token-1"))

	// The STS is back: a new token, and the failure is cleared.
	h.minter.err = nil
	now = now.Add(res.RequeueAfter)
	h.advanceTo(now)
	h.events()
	h.mustReconcile()
	g.Expect(h.minter.calls).To(Equal(4))
	g.Expect(h.token()).To(Equal("token-4"))
	st = h.credential().Status
	g.Expect(st.FailedAttempts).To(BeZero())
	g.Expect(st.LastFailureTime).To(BeNil())
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", now.Add(testTokenTTL).Truncate(time.Second)))
	conds = h.conditions()
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionDegraded))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionReconciling))
	g.Expect(h.events()).To(Equal([]string{"Normal " + EventRenewed}))
}

func TestReconcileTokenExpiredSTSDown(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.mintFirst()

	now := testStart.Add(testTokenTTL + time.Minute)
	h.advanceTo(now)
	h.minter.err = errSTSDown
	res := h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(2))
	g.Expect(h.token()).To(Equal("token-1"), "the expired token is left in place")
	conds := h.conditions()
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonTokenExpired)))
	g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReconciling, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonSTSUnavailable)))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionDegraded))
	g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionStalled))
	g.Expect(h.credential().Status.FailedAttempts).To(BeEquivalentTo(1))
	g.Expect(res.RequeueAfter).To(And(BeNumerically(">=", BackoffBase/2), BeNumerically("<=", BackoffBase)))
	g.Expect(h.events()).To(Equal([]string{"Warning " + EventMintFailed}))
}

// TestReconcileRejected: a rejected credential stalls and is not retried
// before RejectedRetryInterval, unless what it is minted from changes.
func TestReconcileRejected(t *testing.T) {
	cases := []struct {
		name string
		// change happens after the reconcile that finds the backoff holding.
		change func(h *harness)
	}{
		{name: "connection Secret replaced", change: func(h *harness) {
			conn := h.secret(testConnection)
			conn.Data[clearancev1alpha1.DefaultConnectionSecretKey] = testConnectionFiles(h.t)[1]
			if err := h.store.Update(h.ctx, conn); err != nil {
				h.t.Fatal(err)
			}
		}},
		{name: "audience changed", change: func(h *harness) {
			h.updateCredential(func(c *clearancev1alpha1.ClearanceCredential) { c.Spec.Audience = "https://api.example" })
		}},
		{name: "safety retry", change: func(h *harness) { h.advanceTo(testStart.Add(RejectedRetryInterval)) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t)
			h.minter.err = errRejected
			res := h.mustReconcile()

			g.Expect(h.minter.calls).To(Equal(1))
			g.Expect(h.secret(testTarget)).To(BeNil(), "nothing to write")
			conds := h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionStalled, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected)))
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonCredentialRejected)))
			g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionReconciling))
			g.Expect(h.credential().Status.FailedAttempts).To(BeEquivalentTo(1))
			g.Expect(res.RequeueAfter).To(Equal(RejectedRetryInterval))
			g.Expect(h.events()).To(Equal([]string{"Warning " + EventMintFailed}))

			h.advanceTo(testStart.Add(10 * time.Minute))
			res = h.mustReconcile()
			g.Expect(h.minter.calls).To(Equal(1), "no retry before RejectedRetryInterval")
			g.Expect(res.RequeueAfter).To(And(BeNumerically(">", 0), BeNumerically("<=", RejectedRetryInterval-10*time.Minute)))
			g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionStalled, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonCredentialRejected)))

			h.minter.err = nil
			tc.change(h)
			h.mustReconcile()
			g.Expect(h.minter.calls).To(Equal(2), "one new attempt")
			g.Expect(h.token()).To(Equal("token-2"))
			conds = h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
			g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionStalled))
			g.Expect(h.credential().Status.FailedAttempts).To(BeZero())
		})
	}
}

// TestReconcileRetryAfter: an HTTP 429's Retry-After is obeyed (up to
// MaxRetryAfterWait), and no token is requested before it.
func TestReconcileRetryAfter(t *testing.T) {
	cases := []struct {
		name       string
		stored     bool // a valid token is stored: the 429 answers its renewal
		retryAfter time.Duration
		wantWait   time.Duration
		wantReady  OmegaMatcher
	}{
		{name: "new credential", retryAfter: 2 * time.Minute, wantWait: 2 * time.Minute,
			wantReady: haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonRateLimited)},
		{name: "new credential, Retry-After past the cap", retryAfter: 3 * time.Hour, wantWait: MaxRetryAfterWait,
			wantReady: haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonRateLimited)},
		{name: "renewal of a valid token", stored: true, retryAfter: 5 * time.Minute, wantWait: 5 * time.Minute,
			wantReady: haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t)
			mints := 0
			now := testStart
			if tc.stored {
				h.mintFirst()
				mints = 1
				now = h.renewalTime()
				h.advanceTo(now)
			}
			h.minter.err = rateLimited(tc.retryAfter)
			res := h.mustReconcile()

			g.Expect(h.minter.calls).To(Equal(mints + 1))
			g.Expect(res.RequeueAfter).To(Equal(tc.wantWait))
			conds := h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, tc.wantReady))
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReconciling, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonRateLimited)))
			g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionStalled))
			if tc.stored {
				g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionDegraded, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonRateLimited)))
				g.Expect(h.token()).To(Equal("token-1"))
			}
			g.Expect(h.events()).To(Equal([]string{"Warning " + EventMintFailed}))

			h.minter.err = nil
			h.advanceTo(now.Add(res.RequeueAfter - time.Second))
			early := h.mustReconcile()
			g.Expect(h.minter.calls).To(Equal(mints+1), "no token request before Retry-After")
			g.Expect(early.RequeueAfter).To(And(BeNumerically(">", 0), BeNumerically("<=", time.Second)))

			h.advanceTo(now.Add(res.RequeueAfter))
			h.mustReconcile()
			g.Expect(h.minter.calls).To(Equal(mints+2), "the retry")
			g.Expect(h.token()).To(Equal(fmt.Sprintf("token-%d", mints+2)))
			g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
		})
	}
}

func TestReconcileSuspend(t *testing.T) {
	suspend := func(c *clearancev1alpha1.ClearanceCredential) { c.Spec.Suspend = true }

	t.Run("with a valid stored token", func(t *testing.T) {
		g := NewWithT(t)
		h := newHarness(t)
		h.mintFirst()
		h.updateCredential(suspend)

		now := h.renewalTime().Add(time.Minute) // a renewal would be due
		h.advanceTo(now)
		res := h.mustReconcile()

		g.Expect(h.minter.calls).To(Equal(1), "no token request while suspended")
		g.Expect(h.token()).To(Equal("token-1"))
		st := h.credential().Status
		g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", testStart.Add(testTokenTTL)))
		g.Expect(st.RenewalTime).To(BeNil(), "no renewal scheduled")
		g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonSuspended)))
		g.Expect(res.RequeueAfter).To(Equal(testStart.Add(testTokenTTL).Sub(now)), "back at the expiry to report it")
		g.Expect(h.events()).To(BeEmpty())
	})
	t.Run("without a token", func(t *testing.T) {
		g := NewWithT(t)
		h := newHarness(t, suspend)
		res := h.mustReconcile()

		g.Expect(h.minter.calls).To(BeZero())
		g.Expect(h.secret(testTarget)).To(BeNil())
		g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonSuspended)))
		g.Expect(res.RequeueAfter).To(BeZero())
		g.Expect(h.events()).To(BeEmpty())
	})
}

// TestReconcileRefreshAnnotation: the refresh annotation mints one token,
// at least MinForcedMintInterval after the last token request.
func TestReconcileRefreshAnnotation(t *testing.T) {
	cases := []struct {
		name string
		// after is when, after the first token request, the refresh is asked for.
		after time.Duration
		// deferred: the refresh waits until testMinForcedMintInterval has passed.
		deferred bool
	}{
		{name: "within the minimum interval", after: 10 * time.Second, deferred: true},
		{name: "after the minimum interval", after: 5 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t)
			h.mintFirst()

			now := testStart.Add(tc.after)
			h.advanceTo(now)
			const request = "2030-06-01T08:00:10Z"
			h.updateCredential(func(c *clearancev1alpha1.ClearanceCredential) {
				c.Annotations = map[string]string{clearancev1alpha1.RefreshRequestedAtAnnotation: request}
			})
			res := h.mustReconcile()

			if tc.deferred {
				g.Expect(h.minter.calls).To(Equal(1), "deferred")
				g.Expect(h.token()).To(Equal("token-1"))
				conds := h.conditions()
				g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReconciling, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonMintDeferred)))
				g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
				notBefore := testStart.Add(testMinForcedMintInterval)
				g.Expect(res.RequeueAfter).To(Equal(notBefore.Sub(now)))
				g.Expect(h.events()).To(BeEmpty())

				now = notBefore
				h.advanceTo(now)
				res = h.mustReconcile()
			}

			g.Expect(h.minter.calls).To(Equal(2), "one token for the refresh")
			g.Expect(h.token()).To(Equal("token-2"))
			g.Expect(h.secret(testTarget).Annotations).To(HaveKeyWithValue(clearancev1alpha1.RefreshRequestedAtAnnotation, request))
			conds := h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
			g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionReconciling))
			g.Expect(h.credential().Status.LastRequestTime.Time).To(BeTemporally("==", now))
			g.Expect(res.RequeueAfter).To(BeNumerically("~", h.renewalTime().Sub(now), time.Second))
			g.Expect(h.events()).To(Equal([]string{"Normal " + EventRenewed}))

			// The annotation is served: the next reconcile mints nothing.
			h.advanceTo(now.Add(time.Minute))
			h.mustReconcile()
			g.Expect(h.minter.calls).To(Equal(2), "one refresh, one token")
		})
	}
}

// TestReconcileTargetConflict: a Secret of the target's name that the
// credential does not control is left untouched, and nothing is minted.
func TestReconcileTargetConflict(t *testing.T) {
	cases := []struct {
		name    string
		foreign *corev1.Secret
	}{
		{name: "a Secret of someone else", foreign: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: testTarget, Namespace: testNamespace, UID: "foreign-uid"},
			Data:       map[string][]byte{"token": []byte("theirs")},
		}},
		{name: "the target of another credential", foreign: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: testTarget, Namespace: testNamespace, UID: "foreign-uid",
				Labels: map[string]string{clearancev1alpha1.ManagedByLabel: clearancev1alpha1.ManagedByValue},
				OwnerReferences: []metav1.OwnerReference{{
					APIVersion: clearancev1alpha1.GroupVersion.String(), Kind: "ClearanceCredential",
					Name: "other", UID: "other-uid", Controller: ptr.To(true),
				}},
			},
			Data: map[string][]byte{"token": []byte("theirs")},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t)
			h.create(tc.foreign.DeepCopy())
			before := h.secret(testTarget)

			res := h.mustReconcile()

			g.Expect(h.minter.calls).To(BeZero(), "no token for a name it cannot write")
			g.Expect(h.secret(testTarget)).To(Equal(before), "the foreign Secret is untouched")
			conds := h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionStalled, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTargetConflict)))
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionFalse, clearancev1alpha1.ReasonTargetConflict)))
			st := h.credential().Status
			g.Expect(st.ExpiresAt).To(BeNil())
			g.Expect(st.RenewalTime).To(BeNil())
			g.Expect(res.RequeueAfter).To(BeZero(), "the Secret watches bring it back")
			g.Expect(h.events()).To(Equal([]string{"Warning " + EventTargetConflict}))

			h.advanceTo(testStart.Add(time.Minute))
			h.mustReconcile()
			g.Expect(h.minter.calls).To(BeZero())
			g.Expect(h.secret(testTarget)).To(Equal(before))
			g.Expect(h.events()).To(BeEmpty(), "the conflict is reported once")
		})
	}
}

// TestReconcileStatusConflict: a status patch refused with a Conflict loses
// no token and costs no second one: the next reconcile reports the token
// the Secret holds.
func TestReconcileStatusConflict(t *testing.T) {
	g := NewWithT(t)
	h := newHarness(t)
	h.failStatusWrites = 1

	res, err := h.reconcile()

	g.Expect(err != nil || res.RequeueAfter > 0).To(BeTrue(), "the conflict is retried (error or requeue)")
	g.Expect(h.failStatusWrites).To(BeZero(), "the status write was attempted")
	g.Expect(h.minter.calls).To(Equal(1))
	g.Expect(h.token()).To(Equal("token-1"), "the minted token is stored")

	h.advanceTo(testStart.Add(time.Second))
	res = h.mustReconcile()

	g.Expect(h.minter.calls).To(Equal(1), "no second token")
	g.Expect(h.token()).To(Equal("token-1"))
	st := h.credential().Status
	g.Expect(st.ExpiresAt).NotTo(BeNil())
	g.Expect(st.ExpiresAt.Time).To(BeTemporally("==", testStart.Add(testTokenTTL)))
	earliest, latest := renewalBounds(testStart)
	g.Expect(h.renewalTime()).To(And(BeTemporally(">=", earliest), BeTemporally("<=", latest)))
	g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
	g.Expect(res.RequeueAfter).To(BeNumerically("~", h.renewalTime().Sub(testStart.Add(time.Second)), time.Second))
	g.Expect(h.events()).To(Equal([]string{"Normal " + EventMinted}), "one token, one event")
}

// TestReconcileTargetWriteFailure: a token whose write failed is written by
// the next reconcile without another token request.
func TestReconcileTargetWriteFailure(t *testing.T) {
	cases := []struct {
		name    string
		renewal bool // the write that fails is a renewal's (apply), not the first (create)
	}{
		{name: "creating the target Secret"},
		{name: "renewing into the target Secret", renewal: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			h := newHarness(t)
			mints, now, event := 0, testStart, EventMinted
			if tc.renewal {
				h.mintFirst()
				mints, now, event = 1, h.renewalTime(), EventRenewed
				h.advanceTo(now)
			}
			h.failSecretWrites = 1

			_, err := h.reconcile()

			g.Expect(err).To(HaveOccurred(), "the failed write is retried")
			g.Expect(h.failSecretWrites).To(BeZero(), "the write was attempted")
			g.Expect(h.minter.calls).To(Equal(mints + 1))
			if tc.renewal {
				g.Expect(h.token()).To(Equal("token-1"), "the old token stays until the new one is written")
				g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
			} else {
				g.Expect(h.secret(testTarget)).To(BeNil())
			}
			g.Expect(h.conditions()).To(HaveKeyWithValue(clearancev1alpha1.ConditionReconciling, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTargetWriteFailed)))
			g.Expect(h.events()).To(BeEmpty())

			now = now.Add(5 * time.Second)
			h.advanceTo(now)
			res := h.mustReconcile()

			g.Expect(h.minter.calls).To(Equal(mints+1), "the minted token is written, not another")
			want := fmt.Sprintf("token-%d", mints+1)
			g.Expect(h.token()).To(Equal(want))
			conds := h.conditions()
			g.Expect(conds).To(HaveKeyWithValue(clearancev1alpha1.ConditionReady, haveCond(metav1.ConditionTrue, clearancev1alpha1.ReasonTokenValid)))
			g.Expect(conds).NotTo(HaveKey(clearancev1alpha1.ConditionReconciling))
			g.Expect(h.credential().Status.ExpiresAt.Time).To(BeTemporally("==", now.Add(-5*time.Second).Add(testTokenTTL)), "the expiry of the token minted before")
			g.Expect(res.RequeueAfter).To(BeNumerically("~", h.renewalTime().Sub(now), time.Second))
			g.Expect(h.events()).To(Equal([]string{"Normal " + event}))
		})
	}
}
