package nodeapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestTwoStageRoutes(t *testing.T) {
	base := BaseURL(HostPort("10.0.2.1", DefaultPort))
	d := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ got, want string }{
		{Modules.URL(base, mac), "http://10.0.2.1:9873/modules/" + mac},
		{ImageIndex.URL(base, mac), "http://10.0.2.1:9873/index/" + mac},
		{Progress.Path(mac), "/progress/" + mac},
		{ChunkURL(base, d), "http://10.0.2.1:9873/chunk/" + d},
		{ChunkPattern(), "GET /chunk/{sha256}"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	for _, r := range []Route{Modules, ImageIndex, Progress} {
		mux := http.NewServeMux()
		got := ""
		mux.HandleFunc(r.Pattern(http.MethodGet), func(_ http.ResponseWriter, req *http.Request) { got = req.PathValue(MACWildcard) })
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, r.Path(mac), nil))
		if got != mac {
			t.Errorf("%s: PathValue = %q", r, got)
		}
	}
	// The two-stage routes do not shadow the single-stage ones.
	mux := http.NewServeMux()
	for _, r := range []Route{IPXE, Kernel, Image, SystemOverlay, RuntimeOverlay, Modules, ImageIndex} {
		mux.HandleFunc(r.Pattern(http.MethodGet), func(http.ResponseWriter, *http.Request) {})
	}
	mux.HandleFunc(ChunkPattern(), func(http.ResponseWriter, *http.Request) {})
}
