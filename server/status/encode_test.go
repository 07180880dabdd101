package status

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestAppendReportMatchesEncodingJSON(t *testing.T) {
	odd := "a\"b\\c\n\r\t\b\f\x00\x1f<>&\u2028\u2029é\xff\xc3"
	reports := []Report{
		{},
		{Nodes: []NodeStatus{}, Unknown: []NodeStatus{}},
		{Now: -5, UpdateIntervalSeconds: 60,
			Nodes: []NodeStatus{
				{Name: "c001", MAC: "52:54:00:00:00:01", IPAddr: "10.0.2.11", Stage: StageRuntimeOverlay, Sent: "__RUNTIME__.img.gz", LastSeen: 1700000000,
					Heartbeat: &Heartbeat{Version: "1.0", UptimeSeconds: 99, BootID: "id", RuntimeETag: `"etag"`}},
				{Name: "c002"},
				{Name: "c003", Stage: StageImage, Sent: "__IMAGE__.index", Progress: &Progress{Done: 41, Total: 100}},
				{Name: odd, MAC: odd, IPAddr: odd, Stage: odd, Sent: odd, LastSeen: -1, Heartbeat: &Heartbeat{Version: odd, BootID: odd, RuntimeETag: odd}},
			},
			Unknown: []NodeStatus{{Name: "52:54:00:ff:ff:ff", MAC: "52:54:00:ff:ff:ff", Stage: StageDHCP}},
		},
	}
	for i, r := range reports {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendReport(nil, &r); !bytes.Equal(got, want) {
			t.Errorf("report %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "c001", "a\"b\\", "\x00\x7f<>&", "\u2028\u2029", "\xff\xfe", "é\xc3", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("appendString(%q) = %s, want %s", s, got, want)
		}
	})
}

func BenchmarkAppendReport10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	rep := st.Report(nodes)
	out := appendReport(nil, &rep)
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		out = appendReport(out[:0], &rep)
	}
}

func BenchmarkMarshalReport10k(b *testing.B) {
	st, nodes := seenStore(b, 10000)
	rep := st.Report(nodes)
	out, _ := json.Marshal(rep)
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(rep); err != nil {
			b.Fatal(err)
		}
	}
}
