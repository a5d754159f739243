// Package cluster is the real-node suite: the operator runs as a
// pod from its own image (make image) on a one-node cluster built from source
// (hack/cluster/run.sh), installed with Helm and with kustomize, and pods read
// their token from the mounted Secret.
//
// Its files carry the "cluster" build tag, so `go test ./...` skips them;
// `make test-cluster` starts the cluster and runs them inside it.
package cluster
