# clearance-operator Makefile (kubebuilder v4 layout).
# Every tool is pinned in a tools module under hack/tools and built into bin/,
# so a fresh clone needs nothing but Go and make.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

IMG ?= clearance-operator:dev
LOCALBIN := $(CURDIR)/bin
CONTROLLER_GEN := $(LOCALBIN)/controller-gen
GOLANGCI_LINT := $(LOCALBIN)/golangci-lint
HELM := $(LOCALBIN)/helm
KUSTOMIZE := $(LOCALBIN)/kustomize
PROMTOOL := $(LOCALBIN)/promtool
FUZZTIME ?= 10s
GO_TEST_FLAGS ?=

# The test control plane (kube-apiserver, etcd, kubectl) is built from source
# by hack/build-envtest-assets.sh. A KUBEBUILDER_ASSETS set by the user wins.
KUBE_VERSION := $(shell awk '$$1=="require" && $$2=="k8s.io/kubernetes" {sub(/^v/,"",$$3); print $$3}' hack/tools/kube/go.mod)
ENVTEST_ASSETS_DIR := $(LOCALBIN)/k8s/$(KUBE_VERSION)
KUBEBUILDER_ASSETS ?= $(ENVTEST_ASSETS_DIR)
export KUBEBUILDER_ASSETS
# The deployment targets talk to the user's cluster with the user's kubectl;
# the tests use the one built next to the control plane.
KUBECTL ?= kubectl

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and RBAC manifests.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	hack/sync-chart.sh

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver, etcd and kubectl from source into bin/k8s/<version> (minutes the first time).
	@hack/build-envtest-assets.sh >/dev/null

.PHONY: test
test: manifests generate fmt vet envtest-assets $(HELM) $(KUSTOMIZE) $(PROMTOOL) ## Run unit, envtest integration and e2e tests, then bounded fuzzing (all hermetic).
	go test $(GO_TEST_FLAGS) ./...
	$(MAKE) --no-print-directory test-monitoring
	hack/fuzz.sh $(FUZZTIME)

.PHONY: test-monitoring
test-monitoring: $(HELM) $(PROMTOOL) ## Test the chart's alert rules and dashboard with Prometheus' packages and promtool.
	cd hack/tools/prometheus && go test $(GO_TEST_FLAGS) ./...

.PHONY: test-faults
test-faults: envtest-assets ## Run the slow fault-injection suite (minutes; manager and apiserver restarts).
	go test -tags faults -count=1 -timeout 40m ./test/faults/...

.PHONY: test-cluster
test-cluster: envtest-assets $(HELM) ## Run the real-node suite: a one-node cluster from source, the operator as a pod (needs root; takes a while).
	hack/cluster/run.sh go test -tags cluster -count=1 -timeout 45m -v ./test/cluster/... -args -ginkgo.v

.PHONY: cluster
cluster: envtest-assets ## Run the one-node cluster until interrupted (needs root); prints its KUBECONFIG.
	hack/cluster/run.sh

.PHONY: run-local
run-local: envtest-assets ## Run the operator locally: throwaway control plane, STS emulator, sample credential.
	go run ./hack/run-local

.PHONY: bench
bench: envtest-assets ## Run the benchmarks (time to Ready, memory, soak, restart); results in bench/results/.
	go run ./hack/bench $(BENCH_ARGS)

.PHONY: bench-quick
bench-quick: envtest-assets ## Minute-scale benchmark run at N=200.
	go run ./hack/bench -quick $(BENCH_ARGS)

.PHONY: fuzz
fuzz: ## Run every Go fuzz target for FUZZTIME each.
	hack/fuzz.sh $(FUZZTIME)

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...
	cd hack/tools/prometheus && $(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: ## Regenerate code and manifests, tidy modules, and fail on any difference.
	hack/verify.sh

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary into bin/manager.
	go build -o $(LOCALBIN)/manager .

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-clearance (put bin/ on PATH for `kubectl clearance`).
	go build -o $(LOCALBIN)/kubectl-clearance ./cmd/kubectl-clearance

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig.
	go run . $(ARGS)

.PHONY: image
image: ## Build the manager image as an OCI image archive, without Docker, into bin/image/.
	hack/build-image.sh manager $(LOCALBIN)/image/clearance-operator.tar

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRD into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRD from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Deploy the operator with kustomize, using image IMG.
	KUSTOMIZE=$(KUSTOMIZE) hack/deploy.sh $(KUBECTL) $(IMG)

.PHONY: undeploy
undeploy: ## Remove the operator deployed by make deploy.
	$(KUBECTL) delete --ignore-not-found -k config/default

##@ Tools

$(CONTROLLER_GEN): hack/tools/codegen/go.mod
	cd hack/tools/codegen && go build -o $(CONTROLLER_GEN) sigs.k8s.io/controller-tools/cmd/controller-gen

.PHONY: helm
helm: $(HELM) ## Build the pinned Helm into bin/.

$(HELM): hack/tools/helm/go.mod
	cd hack/tools/helm && go build -o $(HELM) helm.sh/helm/v3/cmd/helm

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Build the pinned kustomize into bin/.

$(KUSTOMIZE): hack/tools/kustomize/go.mod
	cd hack/tools/kustomize && go build -o $(KUSTOMIZE) sigs.k8s.io/kustomize/kustomize/v5

.PHONY: promtool
promtool: $(PROMTOOL) ## Build the pinned promtool into bin/.

# Without service discovery: promtool's rule tests need none of it, and it
# is most of the build.
$(PROMTOOL): hack/tools/prometheus/go.mod
	cd hack/tools/prometheus && go build -tags remove_all_sd -o $(PROMTOOL) github.com/prometheus/prometheus/cmd/promtool

$(GOLANGCI_LINT): hack/tools/lint/go.mod
	cd hack/tools/lint && go build -o $(GOLANGCI_LINT) github.com/golangci/golangci-lint/v2/cmd/golangci-lint
