package dhcp

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwcluster/ww/server/config"
	"github.com/wwcluster/ww/server/dhcp/netnstest"
	"github.com/wwcluster/ww/server/status"
	"github.com/wwcluster/ww/server/tftp"
)

// TestQEMUFirmware boots real firmware against the DHCP and TFTP servers:
// a QEMU VM on a tap in the server namespace (no HTTP server, so iPXE
// stops after fetching its script URL). Opt-in: WWT_QEMU=1. Needs
// qemu-system-x86, ovmf, ipxe-qemu.
//
//   - bios: SeaBIOS runs the NIC's iPXE ROM, which asks DHCP as iPXE
//     (user class) and gets http://…/ipxe/{mac}.
//   - uefi: OVMF's own PXE (EDK2 PxeBcDxe, vendor class PXEClient:Arch:00007)
//     must accept the offer (option 60 + 43), fetch snponly.efi over TFTP,
//     and snponly.efi (iPXE) then asks DHCP again and gets the script URL.
func TestQEMUFirmware(t *testing.T) {
	if os.Getenv("WWT_QEMU") == "" {
		t.Skip("set WWT_QEMU=1 to boot QEMU firmware against the servers (make test-measure runs it)")
	}
	netnstest.Require(t, "qemu-system-x86_64")
	for _, fw := range []string{"bios", "uefi"} {
		t.Run(fw, func(t *testing.T) { qemuBoot(t, fw) })
	}
}

// eventLog is a status recorder that signals each event.
type eventLog struct {
	mu     sync.Mutex
	events []status.Event
	ch     chan struct{}
}

func (l *eventLog) Record(e status.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	default:
	}
}

func (l *eventLog) has(stage, sent string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Stage == stage && e.Sent == sent {
			return true
		}
	}
	return false
}

func qemuBoot(t *testing.T, fw string) {
	p := netnstest.New(t, "52:54:00:aa:bb:cc")
	// A tap for the VM in the server namespace; the servers bind to it.
	for _, args := range [][]string{
		{"-n", p.Server, "tuntap", "add", "tap0", "mode", "tap"},
		{"-n", p.Server, "addr", "add", "10.202.0.1/24", "dev", "tap0"},
		{"-n", p.Server, "link", "set", "tap0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	const mac = "52:54:00:00:00:01"
	root := t.TempDir()
	srvTOML := strings.ReplaceAll(testConfig{iface: "tap0", listen: ":67"}.serverTOML(), "10.201.0.", "10.202.0.") +
		"\n[tftp]\nenabled = true\nlisten = \":69\"\ndir = \"/usr/lib/ipxe\"\n"
	nodes := strings.Replace(testNodesTOML, "10.201.0.11", "10.202.0.11", 1)
	if err := os.WriteFile(filepath.Join(root, config.ServerFile), []byte(srvTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, config.NodesFile), []byte(nodes), 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := config.NewStore(root, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	ev := &eventLog{ch: make(chan struct{}, 1)}
	d, err := New(Options{Store: store, Status: ev, Log: quietLog(), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	tf, err := tftp.New(tftp.Options{Store: store, Status: ev, Log: quietLog(), Registerer: prometheus.NewRegistry(), Leases: d})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var done []<-chan struct{}
	for _, run := range []func(context.Context) error{d.Run, tf.Run} {
		run := run
		done = append(done, p.InServer(t, func() {
			if err := run(ctx); err != nil {
				t.Errorf("run: %v", err)
			}
		}))
	}
	t.Cleanup(func() {
		cancel()
		for _, c := range done {
			<-c
		}
	})
	<-d.Ready()
	<-tf.Ready()
	if path := os.Getenv("WWT_TCPDUMP"); path != "" { // debugging aid: a packet trace of the tap
		f, err := os.Create(path + "." + fw)
		if err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithCancel(context.Background())
		dump := p.ServerCommand(dctx, "tcpdump", "-i", "tap0", "-n", "-vvv", "-l", "-U")
		dump.Stdout, dump.Stderr = f, f
		if err := dump.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { dcancel(); _ = dump.Wait(); f.Close() })
	}

	// As tools/lab does: BIOS uses QEMU's iPXE ROM; UEFI has no NIC ROM
	// (romfile=) so OVMF's own PXE runs.
	nic := "virtio-net-pci,netdev=n0,bootindex=1,mac=" + mac
	args := []string{"-nographic", "-m", "256", "-no-reboot",
		"-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"}
	want := []struct{ stage, sent string }{{status.StageDHCP, "http://10.202.0.1:9873/ipxe/" + mac}}
	if fw == "uefi" {
		vars := filepath.Join(t.TempDir(), "vars.fd")
		data, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS_4M.fd")
		if err != nil {
			t.Skipf("no OVMF: %v", err)
		}
		if err := os.WriteFile(vars, data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
			"-drive", "if=pflash,format=raw,file="+vars)
		nic += ",romfile="
		want = append([]struct{ stage, sent string }{
			{status.StageDHCP, "snponly.efi"}, {status.StageTFTP, "snponly.efi"}}, want...)
	}
	if fw == "bios" {
		args = append(args, "-boot", "n")
	}
	args = append(args, "-device", nic)
	qctx, qcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer qcancel()
	var console bytes.Buffer
	q := p.ServerCommand(qctx, "qemu-system-x86_64", args...)
	q.Stdout, q.Stderr = &console, &console
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { qcancel(); _ = q.Wait() }()
	for {
		ok := true
		for _, w := range want {
			ok = ok && ev.has(w.stage, w.sent)
		}
		if ok {
			break
		}
		select {
		case <-ev.ch:
		case <-qctx.Done():
			ev.mu.Lock()
			got := append([]status.Event(nil), ev.events...)
			ev.mu.Unlock()
			t.Fatalf("%s: firmware did not get through; events %+v\nconsole:\n%s", fw, got, console.String())
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	t.Logf("%s: events %+v", fw, ev.events)
}
