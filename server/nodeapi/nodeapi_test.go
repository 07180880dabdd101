package nodeapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

const mac = "52:54:00:00:00:01"

func TestRouteURLs(t *testing.T) {
	base := BaseURL(HostPort("10.0.2.1", DefaultPort))
	for _, tc := range []struct {
		got, want string
	}{
		{base, "http://10.0.2.1:9873"},
		{BaseURL(HostPort("fd00::1", 80)), "http://[fd00::1]:80"},
		{IPXE.URL(base, mac), "http://10.0.2.1:9873/ipxe/" + mac},
		{Kernel.URL(base, mac), "http://10.0.2.1:9873/kernel/" + mac},
		{Image.URL(base, mac), "http://10.0.2.1:9873/image/" + mac},
		{SystemOverlay.URL(base, mac), "http://10.0.2.1:9873/overlay/system/" + mac},
		{RuntimeOverlay.URL("https://ww.example", mac), "https://ww.example/overlay/runtime/" + mac},
		{Heartbeat.Path(mac), "/heartbeat/" + mac},
		{Provision.Path(mac), "/provision/" + mac},
		{IPXEBinURL(base, "ipxe.efi"), "http://10.0.2.1:9873/ipxe-bin/ipxe.efi"},
		{Kernel.Pattern(http.MethodGet), "GET /kernel/{mac}"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestPatternMatchesPath: a route's pattern matches its path, and the MAC
// is found under MACWildcard.
func TestPatternMatchesPath(t *testing.T) {
	for _, r := range []Route{IPXE, Kernel, Image, SystemOverlay, RuntimeOverlay, Heartbeat, Provision} {
		mux := http.NewServeMux()
		got := ""
		mux.HandleFunc(r.Pattern(http.MethodPost), func(_ http.ResponseWriter, req *http.Request) {
			got = req.PathValue(MACWildcard)
		})
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, r.Path(mac), nil))
		if got != mac {
			t.Errorf("%s: PathValue = %q, want %q", r, got, mac)
		}
	}
}

func TestStages(t *testing.T) {
	routes := StageRoutes()
	if len(routes) != len(Stages()) {
		t.Fatalf("%d stage routes for %d stages", len(routes), len(Stages()))
	}
	for _, s := range Stages() {
		if routes[s] == "" {
			t.Errorf("stage %q has no route", s)
		}
	}
}

// TestHeartbeatJSON pins the wire form of the heartbeat (DESIGN.md).
func TestHeartbeatJSON(t *testing.T) {
	hb := HeartbeatMessage{Node: "n001", AgentState: AgentState{Version: "1.2", UptimeSeconds: 42, BootID: "b", RuntimeETag: `"e"`}}
	data, err := json.Marshal(hb)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"node":"n001","version":"1.2","uptime_seconds":42,"boot_id":"b","runtime_etag":"\"e\""}`
	if string(data) != want {
		t.Errorf("JSON = %s, want %s", data, want)
	}
	var back HeartbeatMessage
	if err := json.Unmarshal(data, &back); err != nil || back != hb {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	state, _ := json.Marshal(hb.AgentState)
	if string(state) != `{"version":"1.2","uptime_seconds":42,"boot_id":"b","runtime_etag":"\"e\""}` {
		t.Errorf("stored form = %s", state)
	}
}
