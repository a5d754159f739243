// Command kubectl-clearance is a kubectl plugin for clearance-operator: put
// it on PATH and run `kubectl clearance status|renew|check`.
package main

import (
	"os"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/clearance-operator/clearance-operator/internal/kubectlclearance"
)

func main() {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	os.Exit(kubectlclearance.Execute(kubectlclearance.NewOptions(streams), os.Args[1:]))
}
