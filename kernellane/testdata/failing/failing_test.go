// Package failing holds a test that always fails. The kernel lane's integration
// test runs it inside the guest to show that a failing Go test there is a failing
// exit status outside. It lives under testdata, so `go test ./...` never runs it.
package failing

import "testing"

func TestDeliberateFailure(t *testing.T) {
	t.Fatal("deliberate failure inside the guest")
}
