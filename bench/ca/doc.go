// Package cabench measures how fast Ward's certificate authority issues
// X.509-SVIDs: enrollment and renewal on SQLite and on PostgreSQL, and the
// floor that signing alone sets. The benchmarks are in the package's tests;
// bench/ca/run.sh runs them and bench/README.md says how to read them.
package cabench
