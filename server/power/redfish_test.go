package power

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRedfish is a minimal Redfish service (service root, sessions, one
// ComputerSystem with a Reset action): the unit seam for the Redfish
// controller. No Redfish emulator is installable here (none in Debian 12
// or npm), so the controller is not proven against a real BMC.
type fakeRedfish struct {
	mu       sync.Mutex
	power    string
	resets   []string
	sessions int // open
	allowed  []string
}

func (f *fakeRedfish) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path != "/redfish/v1/" && r.URL.Path != "/redfish/v1" && r.URL.Path != "/redfish/v1/SessionService/Sessions" &&
		r.Header.Get("X-Auth-Token") != "tok" {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	switch {
	case r.URL.Path == "/redfish/v1/" || r.URL.Path == "/redfish/v1":
		reply(map[string]any{"@odata.id": "/redfish/v1/", "Id": "RootService", "RedfishVersion": "1.6.0",
			"Systems": map[string]string{"@odata.id": "/redfish/v1/Systems"},
			"Links":   map[string]any{"Sessions": map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions"}}})
	case r.URL.Path == "/redfish/v1/SessionService/Sessions" && r.Method == http.MethodPost:
		var body struct{ UserName, Password string }
		if json.NewDecoder(r.Body).Decode(&body) != nil || body.UserName != "root" || body.Password != "calvin" {
			http.Error(w, `{"error":{"message":"bad credentials"}}`, http.StatusUnauthorized)
			return
		}
		f.sessions++
		w.Header().Set("X-Auth-Token", "tok")
		w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/1")
		w.WriteHeader(http.StatusCreated)
		reply(map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions/1", "Id": "1"})
	case r.URL.Path == "/redfish/v1/SessionService/Sessions/1" && r.Method == http.MethodDelete:
		f.sessions--
		w.WriteHeader(http.StatusNoContent)
	case r.URL.Path == "/redfish/v1/Systems":
		reply(map[string]any{"@odata.id": "/redfish/v1/Systems", "Members@odata.count": 1,
			"Members": []map[string]string{{"@odata.id": "/redfish/v1/Systems/1"}}})
	case r.URL.Path == "/redfish/v1/Systems/1":
		reply(map[string]any{"@odata.id": "/redfish/v1/Systems/1", "Id": "1", "PowerState": f.power,
			"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
				"target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", "ResetType@Redfish.AllowableValues": f.allowed}}})
	case r.URL.Path == "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset" && r.Method == http.MethodPost:
		var body struct{ ResetType string }
		if json.NewDecoder(r.Body).Decode(&body) != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		f.resets = append(f.resets, body.ResetType)
		switch body.ResetType {
		case "On", "ForceOn":
			f.power = "On"
		case "ForceOff":
			f.power = "Off"
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

// TestRedfishController: the Redfish controller maps on/off/cycle/reset to
// the system's Reset types (cycle as ForceOff + On where PowerCycle is not
// offered), reads PowerState, closes its sessions, and reports bad
// credentials. Against httptest only: see fakeRedfish.
func TestRedfishController(t *testing.T) {
	f := &fakeRedfish{power: "Off", allowed: []string{"On", "ForceOff", "ForceRestart"}}
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	target := Target{Node: "r1", Interface: "redfish", Address: srv.URL, Username: "root", Password: "calvin", Insecure: true}
	c, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil || st != StateOff {
		t.Fatalf("status: %q %v", st, err)
	}
	for _, a := range []Action{On, Reset, Cycle, Off} {
		if _, err := Do(ctx, c, a); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
	}
	if st, err := c.Status(ctx); err != nil || st != StateOff {
		t.Fatalf("status after off: %q %v", st, err)
	}
	f.mu.Lock()
	got, open := strings.Join(f.resets, ","), f.sessions
	f.mu.Unlock()
	if want := "On,ForceRestart,ForceOff,On,ForceOff"; got != want {
		t.Errorf("reset types sent %s, want %s", got, want)
	}
	if open != 0 {
		t.Errorf("%d Redfish sessions left open", open)
	}
	f.mu.Lock()
	f.allowed = append(f.allowed, "PowerCycle")
	f.resets = nil
	f.mu.Unlock()
	if err := c.Cycle(ctx); err != nil {
		t.Fatal(err)
	}
	if f.resets[0] != "PowerCycle" {
		t.Errorf("cycle with PowerCycle offered sent %v", f.resets)
	}

	bad := target
	bad.Password = "wrong"
	cb, _ := New(bad)
	if _, err := cb.Status(ctx); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong password: %v", err)
	}
	strict := target
	strict.Insecure = false
	cs, _ := New(strict)
	if _, err := cs.Status(ctx); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("self-signed certificate accepted without insecure: %v", err)
	}
}
