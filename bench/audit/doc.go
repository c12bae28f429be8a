// Package auditbench measures Ward's audit log: durable appends per second
// with group commit under concurrency, verification speed, and query
// latency over a large log. The benchmarks are in the package's tests;
// bench/audit/README.md says how to run and read them.
package auditbench
