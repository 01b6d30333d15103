// Package archtest checks the import rules of docs/ARCHITECTURE.md: which
// room of the tree may import which, and which rooms only the drivers reach.
// It holds only its test; the rules are data in rules_test.go.
package archtest
