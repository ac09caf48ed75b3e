// Package archtest holds no code: its test checks the import rules of the
// repository's own packages (which package may import which), so that
// `make lint` and `make test` both fail when a change breaks them. The
// rules, and why each holds, are in archtest_test.go and in
// docs/architecture.md.
package archtest
