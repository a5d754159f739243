// Tools module pinning Helm, used to lint the chart and to render it in the
// e2e tests (never a hand-written YAML renderer).
module github.com/clearance-operator/clearance-operator/hack/tools/helm

go 1.26.0

tool helm.sh/helm/v3/cmd/helm

require helm.sh/helm/v3 v3.22.0
