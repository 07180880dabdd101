// Package ipmisim runs OpenIPMI's BMC simulator, ipmi_sim (Debian package
// openipmi), on loopback for tests: a real RMCP+ BMC whose power control
// starts and stops a process (the "node": a trivial command or a QEMU).
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Credentials of the simulated BMC's admin user.
const (
	User     = "admin"
	Password = "password"
)

// Options configure the simulator.
type Options struct {
	// StartCmd is the node: ipmi_sim runs it (through /bin/sh, as "exec
	// StartCmd") on power on, and power off kills it.
	StartCmd string
	// StartNow powers the node on when the simulator starts.
	StartNow bool
	// SerialPort, when set, is the port on 127.0.0.1 the simulator listens
	// on for a VM's IPMI interface (QEMU ipmi-bmc-extern, codec VM).
	SerialPort int
	// SOL, when set, is the node's serial port, "tcp:127.0.0.1:PORT",
	// which the simulator connects to for Serial-over-LAN.
	SOL string
	// Port is the RMCP+ UDP port; 0 picks a free one.
	Port int
	// Netns runs the simulator (and so its node) in this network namespace
	// (ip netns exec); its 127.0.0.1 is then the namespace's.
	Netns string
	// Ready, when set, tells whether the simulator answers (default: a
	// chassis status from this process, which cannot reach into Netns).
	Ready func() error
}

// Sim is a running ipmi_sim.
type Sim struct {
	Port int    // RMCP+ UDP port on 127.0.0.1
	Dir  string // config, state and log
	cmd  *exec.Cmd
}

// Available reports whether ipmi_sim is installed (why not, if not).
func Available() error {
	if _, err := exec.LookPath("ipmi_sim"); err != nil {
		return errors.New("ipmi_sim not found (Debian package openipmi; make deps-test installs it)")
	}
	return nil
}

// Start runs ipmi_sim with o and waits until it answers; t.Cleanup stops
// it. The node process is not stopped with it (ipmi_sim leaves it
// running): the caller powers it off or kills it.
func Start(t testing.TB, o Options) *Sim {
	t.Helper()
	if err := Available(); err != nil {
		t.Fatal(err)
	}
	s := &Sim{Dir: t.TempDir()}
	var lastErr error
	for range 5 { // a free port picked here may be taken before ipmi_sim binds it
		s.Port = o.Port
		if s.Port == 0 {
			s.Port = FreeUDPPort(t)
		}
		if lastErr = s.start(t, o); lastErr == nil {
			return s
		}
	}
	t.Fatalf("ipmi_sim did not start: %v", lastErr)
	return nil
}

func (s *Sim) start(t testing.TB, o Options) error {
	conf := filepath.Join(s.Dir, "lan.conf")
	emu := filepath.Join(s.Dir, "node.emu")
	if err := os.WriteFile(conf, []byte(LanConf(s.Port, o)), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(emu, []byte(EmuFile), 0o600); err != nil {
		return err
	}
	state := filepath.Join(s.Dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(s.Dir, "ipmi_sim.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	argv := []string{"ipmi_sim", "-c", conf, "-f", emu, "-s", state, "-n"}
	if o.Netns != "" {
		argv = append([]string{"ip", "netns", "exec", o.Netns}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	ready := o.Ready
	if ready == nil {
		ready = func() error { _, err := s.PowerOn(context.Background()); return err }
	}
	if err := waitReady(exited, ready); err != nil {
		stop()
		data, _ := os.ReadFile(log.Name())
		return fmt.Errorf("%w; log: %s", err, data)
	}
	s.cmd = cmd
	t.Cleanup(stop)
	return nil
}

// waitReady asks ready until the simulator answers.
func waitReady(exited <-chan error, ready func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("ipmi_sim exited: %v", err)
		default:
		}
		if err := ready(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no answer: %w", err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not synchronisation
	}
}

// PowerOn asks the simulator (with go-ipmi, independently of the code
// under test) whether the node's power is on.
func (s *Sim) PowerOn(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cl, err := client.NewClient("127.0.0.1", s.Port, User, Password)
	if err != nil {
		return false, err
	}
	cl.WithInterface(client.InterfaceLanplus).WithCipherSuiteID(types.CipherSuiteID3).WithTimeout(500 * time.Millisecond).WithRetry(1)
	if err := cl.Connect(ctx); err != nil {
		return false, err
	}
	defer cl.Close(context.WithoutCancel(ctx)) //nolint:errcheck // best effort
	res, err := cl.GetChassisStatus(ctx)
	if err != nil {
		return false, err
	}
	return res.PowerIsOn, nil
}

// Address is the BMC's address for nodes.toml: 127.0.0.1:PORT.
func (s *Sim) Address() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// LanConf is the simulator's lan.conf (ipmi_lan(5)) for an RMCP+ BMC on
// 127.0.0.1:port with the admin user User/Password.
func LanConf(port int, o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, `name "wwtest"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 %d
  priv_limit admin
  allowed_auths_callback none md2 md5 straight
  allowed_auths_user none md2 md5 straight
  allowed_auths_operator none md2 md5 straight
  allowed_auths_admin none md2 md5 straight
  guid a123456789abcdefa123456789abcdef
endlan
`, port)
	// Chassis control goes through the serial (VM) interface code even
	// when no VM connects: without a serial line, power on is refused.
	serial := o.SerialPort
	if serial == 0 {
		serial = port // UDP and TCP port numbers do not collide
	}
	fmt.Fprintf(&b, "serial 15 127.0.0.1 %d codec VM\n", serial)
	if o.StartCmd != "" {
		fmt.Fprintf(&b, "startcmd %q\nstartnow %t\npoweroff_wait 2\nkill_wait 3\n", o.StartCmd, o.StartNow)
	}
	if o.SOL != "" {
		fmt.Fprintf(&b, "sol %q 115200 history=65536\n", o.SOL)
	}
	fmt.Fprintf(&b, "user 2 true %q %q admin 10 none md2 md5 straight\n", User, Password)
	return b.String()
}

// EmuFile is the simulator's command file (ipmi_sim_cmd(5)): one BMC.
const EmuFile = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
