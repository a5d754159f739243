package e2e

import (
	. "github.com/onsi/ginkgo/v2"
)

// One ordered container: the operate specs run the manager as the
// ServiceAccounts the install specs created, and the managers of one context
// are stopped before the next starts (two cluster-wide managers at once
// would hide each other's RBAC problems). A failed spec does not skip the
// rest; specs that need an earlier one's result check for it.
var _ = Describe("Install and operate", Ordered, ContinueOnFailure, func() {
	installSpecs()
	operateSpecs()
	pluginSpecs()
	leaderElectionSpecs()
	namespacedSpecs()
	clusterSpecs()
})
