// Package controlbench measures the control plane: how long a change takes
// from `ward apply` to being enforced by many watching proxies, and what
// validating and distributing a large policy set costs. The benchmarks are
// in the package's tests; bench/README.md says how to run them.
package controlbench
