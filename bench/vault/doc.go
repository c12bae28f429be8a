// Package vaultbench measures the vault: secret reads per second over
// mutual TLS, each with its SecretPolicy check, decryption and durable
// audit record, on SQLite and PostgreSQL, and the start-up overhead of
// `ward run` against exec'ing the app directly. The benchmarks are in the
// package's tests; bench/README.md and run.sh say how to run them.
package vaultbench
