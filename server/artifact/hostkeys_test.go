package artifact

import (
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/wwcluster/ww/overlays"
	"github.com/wwcluster/ww/server/hostkeys"
)

const keyNodesTOML = `
[profiles.default]
image = "debian"
system_overlays = ["wwinit"]
runtime_overlays = ["generic"]

[nodes.n001]
profiles = ["default"]
[nodes.n001.network.eth0]
hwaddr = "52:54:00:00:00:01"
ipaddr = "10.0.2.11"
netmask = "255.255.255.0"

[nodes.n002]
profiles = ["default"]
[nodes.n002.network.eth0]
hwaddr = "52:54:00:00:00:02"
ipaddr = "10.0.2.12"
netmask = "255.255.255.0"
`

func keyTree(t *testing.T) *testTree {
	tt := newTree(t)
	tt.file("images/debian/rootfs/boot/vmlinuz-6.1.0-28-amd64", "kernel", 0o644)
	for _, o := range []string{"wwinit", "generic"} {
		if err := overlays.Write(filepath.Join(tt.root, "overlays", o), o); err != nil {
			t.Fatal(err)
		}
	}
	return tt
}

// A node's host keys are made once on the server, come only in its runtime
// overlay, stay the same across renders and server restarts, match the
// cluster's known_hosts, and go when the node's keys are pruned.
func TestHostKeysStableRuntimeOnly(t *testing.T) {
	tt := keyTree(t)
	snap := snapshot(t, keyNodesTOML)
	runtime := func(b *Builder, name string) map[string]archFile {
		a, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName[name])
		if err != nil {
			t.Fatal(err)
		}
		return unpack(t, a)
	}
	b1, _ := newBuilder(t, tt.root)
	first := runtime(b1, "n001")
	priv, ok := first["etc/ssh/ssh_host_ed25519_key"]
	if !ok || first["etc/ssh/ssh_host_ecdsa_key"].data == "" {
		t.Fatalf("no host keys in the runtime overlay: %v", keys(first))
	}
	if priv.hdr.Mode.Perm() != 0o600 {
		t.Errorf("private key mode %v", priv.hdr.Mode)
	}
	if !strings.Contains(first["etc/ssh/sshd_config.d/ww-hostkeys.conf"].data, "HostKey /etc/ssh/ssh_host_ed25519_key\n") {
		t.Errorf("sshd drop-in: %q", first["etc/ssh/sshd_config.d/ww-hostkeys.conf"].data)
	}
	// "reboots": the same builder again, a new server process, another node first
	runtime(b1, "n002")
	b2, _ := newBuilder(t, tt.root)
	again := runtime(b2, "n001")
	if again["etc/ssh/ssh_host_ed25519_key"].data != priv.data || again["etc/ssh/ssh_host_ecdsa_key"].data != first["etc/ssh/ssh_host_ecdsa_key"].data {
		t.Fatal("host keys changed between renders")
	}
	// known_hosts names both nodes with their addresses and the keys they hold
	kh := again["etc/ssh/ssh_known_hosts"].data
	for _, n := range []string{"n001", "n002"} {
		files := runtime(b2, n)
		signer, err := ssh.ParsePrivateKey([]byte(files["etc/ssh/ssh_host_ed25519_key"].data))
		if err != nil {
			t.Fatal(err)
		}
		addr := snap.Nodes.ByName[n].Primary().IPAddr
		line := n + "," + addr + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
		if !strings.Contains(kh, line+"\n") {
			t.Errorf("known_hosts lacks %q:\n%s", line, kh)
		}
	}
	// root's authorized_keys holds the cluster key (kept on the server)
	ck, err := hostkeys.New(tt.root).ClusterKey()
	if err != nil || !strings.Contains(again["root/.ssh/authorized_keys"].data, ck) {
		t.Errorf("authorized_keys %q lacks the cluster key %q (%v)", again["root/.ssh/authorized_keys"].data, ck, err)
	}
	// never in the system overlay, and refused in one
	sys, err := b2.SystemOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	for p := range unpack(t, sys) {
		if strings.Contains(p, "ssh_host_") {
			t.Errorf("system overlay holds %s", p)
		}
	}
	bad := snapshot(t, strings.Replace(keyNodesTOML, `system_overlays = ["wwinit"]`, `system_overlays = ["wwinit", "generic"]`, 1))
	if _, err := b2.SystemOverlay(bg, bad, bad.Nodes.ByName["n001"]); err == nil || !strings.Contains(err.Error(), "only into runtime overlays") {
		t.Fatalf("system overlay with host keys: %v", err)
	}
	// n002 deleted: its keys are pruned and known_hosts drops it
	snap = snapshot(t, keyNodesTOML[:strings.Index(keyNodesTOML, "[nodes.n002]")])
	gone, err := hostkeys.New(tt.root).Prune([]string{"n001"})
	if err != nil || len(gone) != 1 || gone[0] != "n002" {
		t.Fatalf("prune: %v %v", gone, err)
	}
	kh = runtime(b2, "n001")["etc/ssh/ssh_known_hosts"].data
	if strings.Contains(kh, "\nn002,") || !strings.Contains(kh, "n001,10.0.2.11 ssh-ed25519 ") {
		t.Errorf("known_hosts after prune:\n%s", kh)
	}
}

// TestRuntimeETagIndependentOfRenderOrder: a node's runtime overlay (its
// ETag and known_hosts) depends on the config alone. Rendering another node
// for the first time, which used to make that node's keys then, must not
// change what the first node is served (TestRuntimeOverlayUpdate saw a
// node apply one ETag while the server already served another).
func TestRuntimeETagIndependentOfRenderOrder(t *testing.T) {
	tt := keyTree(t)
	snap := snapshot(t, keyNodesTOML)
	b, _ := newBuilder(t, tt.root)
	first, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n002"]); err != nil {
		t.Fatal(err)
	}
	again, err := b.RuntimeOverlay(bg, snap, snap.Nodes.ByName["n001"])
	if err != nil {
		t.Fatal(err)
	}
	if first.ETag != again.ETag {
		t.Errorf("n001's runtime overlay ETag changed from %s to %s after n002's first render", first.ETag, again.ETag)
	}
	if kh := unpack(t, first)["etc/ssh/ssh_known_hosts"].data; !strings.Contains(kh, "\nn002,") {
		t.Errorf("n001's first known_hosts lacks n002 (never rendered yet):\n%s", kh)
	}
}
