package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestMACRange(t *testing.T) {
	macs, err := loadMACs("", "52:54:01:00:00:ff,3")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"52:54:01:00:00:ff", "52:54:01:00:01:00", "52:54:01:00:01:01"}
	if strings.Join(macs, " ") != strings.Join(want, " ") {
		t.Fatalf("got %v, want %v", macs, want)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for u, ok := range map[string]bool{
		"http://127.0.0.1:9873/ipxe/{mac}": true,
		"http://localhost/status":          true,
		"http://[::1]:80/":                 true,
		"http://10.0.2.1:9873/status":      false,
		"https://127.0.0.1/":               false,
	} {
		if err := checkTarget(u, false); (err == nil) != ok {
			t.Errorf("%s: err %v", u, err)
		}
	}
}

// TestSeqEveryMACOnce: -n N -order seq over N MACs asks for each exactly
// once, counts status codes, and non-2xx/304 as errors.
func TestSeqEveryMACOnce(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mac := strings.TrimPrefix(r.URL.Path, "/ipxe/")
		mu.Lock()
		seen[mac]++
		mu.Unlock()
		if mac == "52:54:01:00:00:07" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("#!ipxe\n"))
	}))
	defer srv.Close()
	o := options{conns: 4, duration: 10 * time.Second, maxReq: 50, method: "GET", macRange: "52:54:01:00:00:01,50",
		order: "seq", timeout: 5 * time.Second, okCodes: "200,304"}
	l, err := newLoad(o, []string{srv.URL + "/ipxe/{mac}"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := l.run()
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 50 || res.Errors != 1 || res.Status["404"] != 1 || res.Status["200"] != 49 {
		t.Fatalf("requests %d errors %d status %v", res.Requests, res.Errors, res.Status)
	}
	if len(seen) != 50 {
		t.Fatalf("%d distinct MACs asked, want 50", len(seen))
	}
	for mac, n := range seen {
		if n != 1 {
			t.Errorf("%s asked %d times", mac, n)
		}
	}
	if res.Bytes != 49*7+int64(len("404 page not found\n")) {
		t.Errorf("bytes %d", res.Bytes)
	}
}
