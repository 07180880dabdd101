package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wwserver ssh keys makes every node's keys and known_hosts; node delete takes
// a node's keys with it; ssh prune removes keys of nodes gone by hand.
func TestSSHKeysDeletePrune(t *testing.T) {
	dir := initTree(t)
	r := "--root=" + dir
	cli(t, true, "node", "add", "k[1-2]", r, "--ipaddr", "10.0.9.11", "--netmask", "255.255.255.0")
	out := cli(t, true, "ssh", "keys", "k[1-2]", r)
	if !strings.Contains(out, "2 nodes: 2 got new keys") {
		t.Fatalf("ssh keys: %s", out)
	}
	kh := cli(t, true, "ssh", "known-hosts", r)
	for _, l := range []string{"\nk1,10.0.9.11 ssh-ed25519 ", "\nk2,10.0.9.12 ssh-ed25519 "} {
		if !strings.Contains(kh, l) {
			t.Errorf("known-hosts lacks %q:\n%s", l, kh)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "hostkeys", "ssh_known_hosts")); err != nil || string(b) != kh {
		t.Errorf("hostkeys/ssh_known_hosts differs from known-hosts (%v)", err)
	}
	keyDir := func(n string) string { return filepath.Join(dir, "hostkeys", "nodes", n) }
	cli(t, true, "node", "delete", "k2", r)
	if _, err := os.Stat(keyDir("k2")); !os.IsNotExist(err) {
		t.Errorf("k2's keys survived node delete: %v", err)
	}
	// keys of a node that is not in the config (removed by hand)
	if err := os.MkdirAll(keyDir("gone"), 0o700); err != nil {
		t.Fatal(err)
	}
	if out := cli(t, true, "ssh", "prune", r); !strings.Contains(out, "1 deleted nodes' keys pruned (gone)") {
		t.Errorf("prune: %s", out)
	}
	if _, err := os.Stat(keyDir("k1")); err != nil {
		t.Errorf("k1's keys: %v", err)
	}
}
