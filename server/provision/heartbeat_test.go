package provision

import (
	"net/http"
	"strings"
	"testing"
)

func TestHeartbeat(t *testing.T) {
	e := newEnv(t, false)
	body := `{"node":"n002","version":"1.0","uptime_seconds":42,"boot_id":"b1","runtime_etag":"\"abc\""}`
	resp, data := e.do(http.MethodPost, "/heartbeat/52-54-00-00-00-02", strings.NewReader(body))
	wantCode(t, resp, data, http.StatusNoContent)
	e.status.mu.Lock()
	hbs := append([]heartbeatRec(nil), e.status.hbs...)
	e.status.mu.Unlock()
	if len(hbs) != 1 {
		t.Fatalf("heartbeats recorded: %d", len(hbs))
	}
	hb := hbs[0]
	if hb.node != "n002" || hb.mac != macN002 || hb.ip != "127.0.0.1" || hb.hb.Version != "1.0" ||
		hb.hb.UptimeSeconds != 42 || hb.hb.BootID != "b1" || hb.hb.RuntimeETag != `"abc"` {
		t.Errorf("heartbeat %+v", hb)
	}

	for _, bad := range []struct {
		body string
		code int
	}{
		{`not json`, http.StatusBadRequest},
		{`{"node":"n002"} {"x":1}`, http.StatusBadRequest},
		{`{"uptime_seconds":"soon"}`, http.StatusBadRequest},
		{``, http.StatusBadRequest},
		{`{"pad":"` + strings.Repeat("x", MaxHeartbeatBytes) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		resp, data := e.do(http.MethodPost, "/heartbeat/"+macN002, strings.NewReader(bad.body))
		wantCode(t, resp, data, bad.code)
	}
	// Unknown fields are fine (newer clients).
	resp, data = e.do(http.MethodPost, "/heartbeat/"+macN002, strings.NewReader(`{"node":"n002","future":true}`))
	wantCode(t, resp, data, http.StatusNoContent)
	// Another node's name in the body: recorded for the MAC's node, logged.
	resp, data = e.do(http.MethodPost, "/heartbeat/"+macN002, strings.NewReader(`{"node":"n009"}`))
	wantCode(t, resp, data, http.StatusNoContent)
	if !strings.Contains(e.logs.String(), "heartbeat names another node") {
		t.Error("name mismatch not logged")
	}
	// Unknown MAC.
	resp, data = e.do(http.MethodPost, "/heartbeat/"+macNone, strings.NewReader(`{}`))
	wantCode(t, resp, data, http.StatusNotFound)
	if ev := e.status.last(t); ev.Node != "" || ev.Sent != ReasonNotFound || ev.MAC != macNone {
		t.Errorf("event %+v", ev)
	}
}
