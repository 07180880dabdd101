package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wwcluster/ww/tools/lab"
)

// The cluster node's devices beyond the lab's eth0 (nodes.toml, appended):
// a second card with a static address and MTU, a VLAN on it, and a bond of
// two more cards. Server-side addresses on the lab bridge reach eth1 and
// bond0 (the lab's kernel here cannot make 802.1Q devices, so the VLAN is
// checked on the node).
const clusterNetTOML = `
[nodes.n001.network.eth1]
hwaddr = "52:54:00:98:00:01"
ipaddr = "10.98.0.11"
netmask = "255.255.255.0"
mtu = 9000
[nodes.n001.network.vlan7]
type = "vlan"
id = 7
parent = "eth1"
ipaddr = "10.7.0.11"
netmask = "255.255.255.0"
[nodes.n001.network.eth2]
hwaddr = "52:54:00:97:00:01"
[nodes.n001.network.eth3]
hwaddr = "52:54:00:97:00:02"
[nodes.n001.network.bond0]
type = "bond"
members = ["eth2", "eth3"]
ipaddr = "10.97.0.11"
netmask = "255.255.255.0"
`

// TestClusterNetworkManager (make test-cluster): a Debian 12 image with
// NetworkManager and sshd (initramfs/debian-image.sh net-nm) boots with four
// NICs; network_stack auto renders NetworkManager keyfiles. The second NIC
// has its address and MTU, the VLAN and the bond come up; root logs in from
// the server's namespace with the cluster key and the rendered known_hosts
// under StrictHostKeyChecking=yes, and again after the node is restarted
// (same host key).
func TestClusterNetworkManager(t *testing.T) {
	clusterNode(t, "WW_NET_NM_IMAGE", "ww-eth1")
}

// TestClusterNetworkd: the same with systemd-networkd (net-networkd image:
// neither NetworkManager nor ifupdown, so auto picks networkd).
func TestClusterNetworkd(t *testing.T) {
	clusterNode(t, "WW_NET_NETWORKD_IMAGE", "routable")
}

func clusterNode(t *testing.T, imageEnv, stackWord string) {
	img := os.Getenv(imageEnv)
	if img == "" {
		t.Skipf("run by make test-cluster (%s)", imageEnv)
	}
	n := lab.LabNode(1)
	wwserver := filepath.Join(envOr("WW_BIN", "../bin"), "wwserver")
	var l *lab.Lab
	e := newEnvWith(t, 20*time.Minute, envOptions{
		Image: img,
		Tree:  lab.TreeOptions{Nodes: []lab.Node{n}},
		Setup: func(tree string) error {
			f, err := os.OpenFile(filepath.Join(tree, "nodes.toml"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			if _, err := f.WriteString(clusterNetTOML); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			// every host key (RSA too) and ssh_known_hosts before the first boot
			out, err := exec.Command(wwserver, "ssh", "keys", "--root", tree).CombinedOutput()
			if err != nil {
				return fmt.Errorf("wwserver ssh keys: %v\n%s", err, out)
			}
			return nil
		},
		SetupLab: func(lb *lab.Lab) error {
			l = lb
			for _, a := range []string{"10.98.0.1/24", "10.97.0.1/24"} {
				if out, err := exec.Command("ip", "-n", lb.NS, "addr", "add", a, "dev", lb.Bridge).CombinedOutput(); err != nil {
					return fmt.Errorf("ip addr add %s: %v\n%s", a, err, out)
				}
			}
			return nil
		},
	})
	opts := lab.VMOptions{Name: n.Name, MAC: n.MAC, Firmware: lab.BIOS, MemoryMB: 1536,
		TapNICs: []string{"52:54:00:98:00:01", "52:54:00:97:00:01", "52:54:00:97:00:02"}}
	vm := e.startVM(opts)
	e.waitRuntime(n.Name)
	t.Logf("%s at RUNTIME_OVERLAY %s after QEMU started", n.Name, time.Since(vm.Started).Round(time.Second))
	report := e.ssh(l, n.IP, `set -x; cat /sys/class/net/eth1/mtu; ip -br addr; ip -d link show vlan7; cat /proc/net/bonding/bond0;
		(nmcli -t -f NAME,DEVICE connection show --active || networkctl list) 2>&1; ls -l /etc/ssh/ssh_host_ed25519_key`)
	for _, want := range []string{"\n9000\n", "10.98.0.11/24", "10.7.0.11/24", "vlan protocol 802.1Q id 7", "10.97.0.11/24",
		"Slave Interface: eth2", "Slave Interface: eth3", stackWord, "-rw------- 1 root root"} {
		if !strings.Contains(report, want) {
			t.Errorf("node report lacks %q", want)
		}
	}
	for _, addr := range []string{"10.98.0.11", "10.97.0.11"} {
		e.ping(l, addr)
	}
	if t.Failed() {
		t.Logf("node report:\n%s", report)
	}
	// "reboot": a new QEMU boots the node again; its host key is the same
	vm.Stop(10 * time.Second)
	vm2 := e.startVM(opts)
	e.waitRuntime(n.Name)
	t.Logf("%s back %s after the second QEMU started", n.Name, time.Since(vm2.Started).Round(time.Second))
	if out := e.ssh(l, n.IP, "cat /proc/sys/kernel/random/boot_id"); len(strings.TrimSpace(out)) < 32 {
		t.Errorf("second login: %q", out)
	}
}

// ping waits up to a minute (the stack may still be configuring the device)
// for one echo reply from addr to the server's namespace.
func (e *env) ping(l *lab.Lab, addr string) {
	e.t.Helper()
	var out []byte
	var err error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		// each try waits up to 5 s for its reply: no other pause needed
		out, err = exec.CommandContext(e.ctx, "ip", "netns", "exec", l.NS, "ping", "-c", "1", "-W", "5", addr).CombinedOutput()
		if err == nil {
			return
		}
		if strings.Contains(string(out), "exec of") {
			break // no ping binary (iputils-ping, in CLUSTER_PACKAGES)
		}
	}
	e.t.Errorf("ping %s from the server's namespace: %v\n%s", addr, err, out)
}

// ssh runs a command on the node as root from the server's namespace with
// the cluster key and the tree's ssh_known_hosts, host keys checked
// strictly; it retries while sshd starts (each try bounded), up to 3 minutes.
func (e *env) ssh(l *lab.Lab, addr, command string) string {
	e.t.Helper()
	keys := filepath.Join(l.TreeDir, "hostkeys")
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", l.NS, "ssh",
			"-i", filepath.Join(keys, "id_ed25519"), "-o", "UserKnownHostsFile="+filepath.Join(keys, "ssh_known_hosts"),
			"-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
			"-o", "ConnectTimeout=5", "root@"+addr, command).CombinedOutput()
		cancel()
		if err == nil {
			return string(out)
		}
		if strings.Contains(string(out), "REMOTE HOST IDENTIFICATION HAS CHANGED") || strings.Contains(string(out), "Host key verification failed") {
			e.t.Fatalf("ssh %s: host key not the rendered one: %s", addr, out)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("ssh %s: %v\n%s", addr, err, out)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("ssh %s: %v", addr, e.ctx.Err())
		case <-time.After(2 * time.Second): // sshd not up yet: try again
		}
	}
}
