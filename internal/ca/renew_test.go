package ca_test

import (
	"context"
	"testing"
	"time"
)

// TestOnlyWorkloadsRenew: the renewal endpoint renews workload SVIDs only.
// An operator's credential (spiffe://TD/user/NAME) chains to the same CA
// and is in the inventory, but renewing it there would give it a fresh
// lifetime outside `ward admin create`, which alone decides an operator's.
func TestOnlyWorkloadsRenew(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	op, err := f.ca.IssueOperator(ctx, "alice", p256(t).Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := f.certCount(t)
	if _, err := f.ca.Renew(ctx, op.Cert, csrFor(t, p256(t), nil), ""); code(err) != "bad_credential" {
		t.Fatalf("renewing an operator credential: %v, want code bad_credential", err)
	}
	if f.certCount(t) != before {
		t.Error("the refused renewal stored a certificate")
	}
}
