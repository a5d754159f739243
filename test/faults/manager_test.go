package faults

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	clearancev1alpha1 "github.com/clearance-operator/clearance-operator/api/v1alpha1"
	"github.com/clearance-operator/clearance-operator/internal/clearance"
	"github.com/clearance-operator/clearance-operator/internal/controller"
	"github.com/clearance-operator/clearance-operator/internal/testutil"
)

// In-process managers reconcile only the credentials carrying this label, so
// they never compete with a manager process (which is confined with
// --namespaces) or with another suite container's manager.
const (
	inProcLabel = "faults.clearance.dev/manager"
	inProcValue = "in-process"
)

type inProcOptions struct {
	// attemptTimeout is the STS client's per-attempt timeout; 2s when zero.
	attemptTimeout time.Duration
}

// inProcManager is the controller wired as main.go wires it, running in the
// test process so its metrics registry and logs can be inspected.
type inProcManager struct {
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan struct{}
}

func startInProcManager(o inProcOptions) *inProcManager {
	GinkgoHelper()
	if o.attemptTimeout == 0 {
		o.attemptTimeout = 2 * time.Second
	}
	cacheOpts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&clearancev1alpha1.ClearanceCredential{}: {Label: labels.SelectorFromSet(labels.Set{inProcLabel: inProcValue})},
	}}
	opts := ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  controller.ManagedSecretsCacheOptions(cacheOpts),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	Expect(err).NotTo(HaveOccurred())
	Expect(controller.Setup(mgr, controller.Options{
		Minter: clearance.NewClient(clearance.WithEgress(testutil.LoopbackEgress),
			clearance.WithClock(clock.RealClock{}), clearance.WithAttemptTimeout(o.attemptTimeout)),
		MaxConcurrentReconciles: 4,
	})).To(Succeed())

	ctx, cancel := context.WithCancel(context.Background())
	m := &inProcManager{mgr: mgr, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	return m
}

// running reports whether the manager is still up (it returns on its own
// only after a fatal error).
func (m *inProcManager) running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

func (m *inProcManager) stop() {
	GinkgoHelper()
	m.cancel()
	Eventually(m.done).WithTimeout(40 * time.Second).Should(BeClosed())
}
