// Package faults holds the reliability and security suite: the
// operator under STS faults, apiserver outages, manager crashes and bad
// input, with a secrecy check after every case.
//
// The quick cases (untagged files) run with `make test`; the slow ones (files
// with the "faults" build tag: the manager as a separate process, apiserver
// restarts, minutes-long observations) run with `make test-faults`, which
// runs the quick cases too.
package faults
