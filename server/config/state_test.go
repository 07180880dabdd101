package config

import (
	"strings"
	"testing"
)

func TestStateBackend(t *testing.T) {
	base := "address = \"10.0.0.1\"\n"
	s, err := ParseServer("wwserver.toml", []byte(base))
	if err != nil || s.State.Backend != BackendFiles {
		t.Fatalf("default backend: %+v %v", s, err)
	}
	s, err = ParseServer("wwserver.toml", []byte(base+"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"http://10.0.0.5:2379\"]\nprefix = \"/c1/\"\n"))
	if err != nil || s.State.Etcd.Endpoints[0] != "http://10.0.0.5:2379" || s.State.Etcd.Prefix != "/c1/" {
		t.Fatalf("etcd backend: %+v %v", s, err)
	}
	// With etcd each DHCP worker waits for its lease's batch: many workers.
	if s.State.Etcd.LeaseBatch != DefaultLeaseBatch || s.DHCP.Workers != 512 {
		t.Fatalf("etcd defaults: lease_batch %d, dhcp.workers %d", s.State.Etcd.LeaseBatch, s.DHCP.Workers)
	}
	s, err = ParseServer("wwserver.toml", []byte(base+"[dhcp]\nworkers = 16\n[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"http://e:2379\"]\nlease_batch = 1\n"))
	if err != nil || s.State.Etcd.LeaseBatch != 1 || s.DHCP.Workers != 16 {
		t.Fatalf("lease_batch 1, workers 16: %+v %v", s, err)
	}
	for _, tc := range []struct{ in, want string }{
		{"[state]\nbackend = \"redis\"\n", "wwserver.toml:3: state.backend: must be"},
		{"[state]\nbackend = \"etcd\"\n", "state.etcd.endpoints: required"},
		{"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"10.0.0.5:2379\"]\n", "want http://HOST:PORT"},
		{"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"https://e:2379\"]\nca_file = \"/ca\"\n", "go together"},
		{"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoint = [\"http://e:2379\"]\n", "unknown key"},
		{"[state]\nbackend = \"etcd\"\n[state.etcd]\nendpoints = [\"http://e:2379\"]\nlease_batch = 101\n", "wwserver.toml:6: state.etcd.lease_batch: must be 1..100, got 101"},
	} {
		_, err := ParseServer("wwserver.toml", []byte(base+tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want %q", tc.in, err, tc.want)
		}
	}
}
