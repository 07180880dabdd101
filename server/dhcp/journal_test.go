package dhcp

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// TestAppendRecordMatchesJSON: the hand-written journal encoding is what
// encoding/json makes of the record, and reads back the same.
func TestAppendRecordMatchesJSON(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.FixedZone("x", 3600))
	for _, r := range []journalRecord{
		{Seq: 1, IP: netip.MustParseAddr("10.0.0.1"), MAC: "02:00:00:00:00:01", Node: "n001", State: StateBound, Expires: exp},
		{Seq: 18446744073709551615, IP: netip.MustParseAddr("10.0.0.2"), State: stateFree},
		{Seq: 3, IP: netip.MustParseAddr("10.0.0.3"), MAC: "m", Node: "wé\"ird<\\>\n", State: StateDeclined, Expires: exp.UTC()},
	} {
		want, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		got := appendRecord(nil, &r)
		if string(got) != string(want)+"\n" {
			t.Errorf("appendRecord = %s\nwant           %s", got, want)
		}
		var back journalRecord
		if err := json.Unmarshal(got, &back); err != nil || back.Seq != r.Seq || back.IP != r.IP || back.Node != r.Node ||
			back.MAC != r.MAC || back.State != r.State || !back.Expires.Equal(r.Expires) {
			t.Errorf("read back %+v (%v), want %+v", back, err, r)
		}
	}
}

// TestJournalBoundsWaitingReplies: while a write is outstanding, at most
// maxWaiting replies wait for it; the rest are refused at once.
func TestJournalBoundsWaitingReplies(t *testing.T) {
	j, err := openJournal(t.TempDir(), compactAt, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer j.f.Close()
	b := j.append(&journalRecord{Seq: 1, IP: netip.MustParseAddr("10.0.0.1"), State: stateFree})
	waiting, refused := 0, 0
	for i := 0; i < maxWaiting+5; i++ {
		b.whenDurable(func(err error) {
			if err == errJournalBacklog {
				refused++
			}
		})
	}
	waiting = len(b.after)
	if waiting != maxWaiting || refused != 5 {
		t.Errorf("waiting %d, refused %d; want %d and 5", waiting, refused, maxWaiting)
	}
}
