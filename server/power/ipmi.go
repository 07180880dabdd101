package power

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// IPMIPort is the RMCP+ port unless the address names one.
const IPMIPort = 623

// IPMI limits (IPMI 2.0, RAKP): longer names or passwords can never log in.
const (
	maxIPMIUser     = 16
	maxIPMIPassword = 20
)

// ipmiController talks IPMI 2.0 (RMCP+, "lanplus") to a BMC with
// github.com/bougou/go-ipmi, one session per call.
type ipmiController struct {
	t    Target
	host string
	port int
}

func newIPMI(t Target) (*ipmiController, error) {
	host, port, err := splitHostPort(t.Address, IPMIPort)
	if err != nil {
		return nil, err
	}
	if len(t.Username) > maxIPMIUser {
		return nil, fmt.Errorf("BMC username is %d bytes; IPMI allows at most %d", len(t.Username), maxIPMIUser)
	}
	if len(t.Password) > maxIPMIPassword {
		return nil, fmt.Errorf("BMC password is %d bytes; IPMI 2.0 allows at most %d", len(t.Password), maxIPMIPassword)
	}
	return &ipmiController{t: t, host: host, port: port}, nil
}

// splitHostPort splits host[:port], with def when no port is given.
func splitHostPort(addr string, def int) (string, int, error) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("BMC address %q: bad port %q", addr, p)
		}
		return h, n, nil
	}
	return strings.Trim(addr, "[]"), def, nil
}

// ipmiClient opens a session (Connect) with the node's cipher suite; the
// caller closes it.
func (c *ipmiController) ipmiClient(ctx context.Context) (*client.Client, error) {
	cl, err := client.NewClient(c.host, c.port, c.t.Username, c.t.Password)
	if err != nil {
		return nil, err
	}
	// Per packet: the session's whole time is ctx's. Choosing the suite
	// skips the cipher suite discovery, which some BMCs (ipmi_sim among
	// them) answer only after retries.
	cl.WithInterface(client.InterfaceLanplus).WithTimeout(time.Second).WithRetry(2).
		WithCipherSuiteID(types.CipherSuiteID(c.t.CipherSuite)).WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator)
	if err := cl.Connect(ctx); err != nil {
		bmc := net.JoinHostPort(c.host, strconv.Itoa(c.port))
		if strings.Contains(err.Error(), "RAKP") {
			return nil, fmt.Errorf("IPMI login to %s refused (wrong username or password?): %s", bmc, oneLine(err))
		}
		return nil, fmt.Errorf("IPMI session with %s: %s", bmc, oneLine(err))
	}
	return cl, nil
}

// session runs fn in one IPMI session and closes it (within a second of
// its own, so a session is not left open when ctx has run out).
func (c *ipmiController) session(ctx context.Context, fn func(*client.Client) error) error {
	cl, err := c.ipmiClient(ctx)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = cl.Close(closeCtx)
	}()
	return fn(cl)
}

func (c *ipmiController) control(ctx context.Context, ctl chassis.ChassisControl) error {
	return c.session(ctx, func(cl *client.Client) error {
		_, err := cl.ChassisControl(ctx, ctl)
		return err
	})
}

func (c *ipmiController) On(ctx context.Context) error {
	return c.control(ctx, chassis.ChassisControlPowerUp)
}
func (c *ipmiController) Off(ctx context.Context) error {
	return c.control(ctx, chassis.ChassisControlPowerDown)
}
func (c *ipmiController) Cycle(ctx context.Context) error {
	return c.control(ctx, chassis.ChassisControlPowerCycle)
}
func (c *ipmiController) Reset(ctx context.Context) error {
	return c.control(ctx, chassis.ChassisControlHardReset)
}

func (c *ipmiController) Status(ctx context.Context) (State, error) {
	var st State
	err := c.session(ctx, func(cl *client.Client) error {
		res, err := cl.GetChassisStatus(ctx)
		if err != nil {
			return err
		}
		st = StateOff
		if res.PowerIsOn {
			st = StateOn
		}
		return nil
	})
	return st, err
}

// oneLine is err's text on one line (go-ipmi joins the errors of each
// cipher suite tried with newlines): a power result is one line per node.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
