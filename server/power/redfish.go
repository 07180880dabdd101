package power

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/redfish"
)

// redfishController drives a BMC's Redfish service with
// github.com/stmcginnis/gofish: the first ComputerSystem's Reset action and
// PowerState. One HTTP client and Redfish session per call; ctx bounds
// every request.
type redfishController struct {
	t        Target
	endpoint string
}

func newRedfish(t Target) (*redfishController, error) {
	ep := t.Address
	if !strings.Contains(ep, "://") {
		ep = "https://" + ep
	}
	return &redfishController{t: t, endpoint: strings.TrimSuffix(ep, "/")}, nil
}

// system connects, runs fn on the first computer system and logs out.
func (c *redfishController) system(ctx context.Context, fn func(*redfish.ComputerSystem) error) error {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: c.t.Insecure} //nolint:gosec // the admin's choice (bmc.insecure)
	api, err := gofish.ConnectContext(ctx, gofish.ClientConfig{Endpoint: c.endpoint, Username: c.t.Username,
		Password: c.t.Password, HTTPClient: &http.Client{Transport: transport}})
	if err != nil {
		return fmt.Errorf("redfish service %s: %w", c.endpoint, err)
	}
	defer api.Logout()
	defer transport.CloseIdleConnections()
	systems, err := api.Service.Systems()
	if err != nil {
		return fmt.Errorf("redfish %s: list systems: %w", c.endpoint, err)
	}
	if len(systems) == 0 {
		return fmt.Errorf("redfish %s: no computer system", c.endpoint)
	}
	return fn(systems[0])
}

func (c *redfishController) reset(ctx context.Context, rt redfish.ResetType) error {
	return c.system(ctx, func(s *redfish.ComputerSystem) error { return s.Reset(rt) })
}

func (c *redfishController) On(ctx context.Context) error { return c.reset(ctx, redfish.OnResetType) }
func (c *redfishController) Off(ctx context.Context) error {
	return c.reset(ctx, redfish.ForceOffResetType)
}
func (c *redfishController) Reset(ctx context.Context) error {
	return c.reset(ctx, redfish.ForceRestartResetType)
}

// Cycle uses PowerCycle where the system offers it, else ForceOff and On
// (the reset types a system allows are its choice).
func (c *redfishController) Cycle(ctx context.Context) error {
	return c.system(ctx, func(s *redfish.ComputerSystem) error {
		if offers(s, redfish.PowerCycleResetType) {
			return s.Reset(redfish.PowerCycleResetType)
		}
		if s.PowerState != redfish.OffPowerState {
			if err := s.Reset(redfish.ForceOffResetType); err != nil {
				return err
			}
		}
		return s.Reset(redfish.OnResetType)
	})
}

func (c *redfishController) Status(ctx context.Context) (State, error) {
	var st State
	err := c.system(ctx, func(s *redfish.ComputerSystem) error {
		switch s.PowerState {
		case redfish.OnPowerState:
			st = StateOn
		case redfish.OffPowerState:
			st = StateOff
		default:
			st = State(strings.ToLower(string(s.PowerState)))
			if st == "" {
				return fmt.Errorf("redfish %s: system %s reports no PowerState", c.endpoint, s.ID)
			}
		}
		return nil
	})
	return st, err
}

// offers reports whether s lists rt among its reset types (a system that
// lists none is taken to offer all, as gofish does).
func offers(s *redfish.ComputerSystem, rt redfish.ResetType) bool {
	if len(s.SupportedResetTypes) == 0 {
		return true
	}
	for _, t := range s.SupportedResetTypes {
		if t == rt {
			return true
		}
	}
	return false
}
