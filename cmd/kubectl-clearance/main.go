// Command kubectl-clearance is a kubectl plugin for clearance-operator: put
// it on PATH and run `kubectl clearance status|renew|check`.
package main

import (
	"os"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/clearance-operator/clearance-operator/internal/kubectlclearance"
)

func main() {
	// The command prints what it has to say itself; without a logger
	// controller-runtime's client would warn on stderr that none was set.
	ctrllog.SetLogger(logr.Discard())
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	os.Exit(kubectlclearance.Execute(kubectlclearance.NewOptions(streams), os.Args[1:]))
}
