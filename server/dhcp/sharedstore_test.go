package dhcp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// busyShared is a SharedLeases whose Claim answers err (a unit seam: the
// etcd store's own tests run real etcd).
type busyShared struct{ err error }

func (b busyShared) Claim(context.Context, Lease) (Lease, error)       { return Lease{}, b.err }
func (b busyShared) Release(context.Context, netip.Addr, string) error { return nil }
func (b busyShared) Leases(context.Context) ([]Lease, error)           { return nil, nil }

// A busy lease writer (its queue full) drops the request but does not make
// the store refuse everything for sharedRetry, as a database that does not
// answer does.
func TestSharedBusyIsNotDown(t *testing.T) {
	now := time.Now()
	ip := netip.MustParseAddr("10.9.0.5")
	for _, c := range []struct {
		err      error
		wantDown bool
	}{
		{ErrSharedBusy, false},
		{errors.New("etcd claim: context deadline exceeded"), true},
	} {
		s := newSharedStore(busyShared{c.err}, slog.New(slog.DiscardHandler))
		_, _, err := s.claim(ip, "52:54:00:00:00:01", "", StateOffered, now.Add(time.Minute), now)
		if c.wantDown != errors.Is(err, errSharedUnavailable) || c.wantDown == errors.Is(err, ErrSharedBusy) {
			t.Fatalf("%v: claim error %v", c.err, err)
		}
		if ok, why := s.health(); ok == c.wantDown {
			t.Fatalf("%v: health ok=%v %q", c.err, ok, why)
		}
	}
}
