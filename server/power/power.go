// Package power switches nodes on and off and reads their power state
// through their BMCs (IPMI 2.0 over LAN, or Redfish), many nodes at a time
// with bounded parallelism and a timeout per node.
package power

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wwcluster/ww/server/config"
)

// Action is what a power command asks of a node's BMC.
type Action string

// The actions of `wwserver power`.
const (
	On     Action = "on"
	Off    Action = "off"   // hard power off
	Cycle  Action = "cycle" // off, then on again
	Reset  Action = "reset" // hard reset, the power stays on
	Status Action = "status"
)

// Actions lists every action, in the order help texts give them.
func Actions() []Action { return []Action{On, Off, Cycle, Reset, Status} }

// ParseAction returns the action named s.
func ParseAction(s string) (Action, error) {
	for _, a := range Actions() {
		if string(a) == s {
			return a, nil
		}
	}
	return "", fmt.Errorf("unknown power action %q: want on, off, cycle, reset or status", s)
}

// State is a node's power state as its BMC reports it.
type State string

// Power states.
const (
	StateOn  State = "on"
	StateOff State = "off"
)

// Controller is one node's BMC. Each call is one short session with the
// BMC, bounded by ctx.
type Controller interface {
	On(ctx context.Context) error
	Off(ctx context.Context) error
	Cycle(ctx context.Context) error
	Reset(ctx context.Context) error
	Status(ctx context.Context) (State, error)
}

// Target is what it takes to reach one node's BMC.
type Target struct {
	Node        string
	Interface   string // config.BMCLanplus or config.BMCRedfish
	Address     string // host[:port]; redfish also a URL
	Username    string
	Password    string
	CipherSuite int  // lanplus
	Insecure    bool // redfish: do not verify the BMC's certificate
}

// maxPasswordFile bounds a password_file read: a password is short.
const maxPasswordFile = 4 << 10

// TargetFor builds node n's target from the node database: the inline
// password, or the first line of its password_file (relative paths are
// under the served tree root).
func TargetFor(ns *config.Nodes, n *config.Node, root string) (Target, error) {
	b := n.BMC
	if b == nil || b.Address == "" {
		return Target{}, fmt.Errorf("no BMC address (set nodes.%s.bmc.address, or bmc.address on a profile)", n.Name)
	}
	t := Target{Node: n.Name, Interface: b.Interface, Address: b.Address, Username: b.Username,
		Password: ns.BMCPassword(n.Name), CipherSuite: b.CipherSuite, Insecure: b.Insecure}
	if b.PasswordFile != "" {
		pw, err := readPasswordFile(b.PasswordFile, root)
		if err != nil {
			return Target{}, err
		}
		t.Password = pw
	}
	return t, nil
}

// readPasswordFile returns the first line of path (relative: under root).
func readPasswordFile(path, root string) (string, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("BMC password_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPasswordFile+1))
	if err != nil {
		return "", fmt.Errorf("BMC password_file: %w", err)
	}
	if len(data) > maxPasswordFile {
		return "", fmt.Errorf("BMC password_file %s: over %d bytes, not a password", path, maxPasswordFile)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	return strings.TrimSuffix(line, "\r"), nil
}

// New returns the controller for t's interface.
func New(t Target) (Controller, error) {
	switch t.Interface {
	case config.BMCLanplus, "":
		return newIPMI(t)
	case config.BMCRedfish:
		return newRedfish(t)
	}
	return nil, fmt.Errorf("BMC interface %q: want %q or %q", t.Interface, config.BMCLanplus, config.BMCRedfish)
}

// Do runs action on c; the state is set for Status only.
func Do(ctx context.Context, c Controller, a Action) (State, error) {
	switch a {
	case On:
		return "", c.On(ctx)
	case Off:
		return "", c.Off(ctx)
	case Cycle:
		return "", c.Cycle(ctx)
	case Reset:
		return "", c.Reset(ctx)
	case Status:
		return c.Status(ctx)
	}
	return "", fmt.Errorf("unknown power action %q", a)
}

// timeoutError names the timeout when ctx's deadline ended err.
func timeoutError(ctx context.Context, err error, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %s (BMC down, wrong address, or UDP/HTTPS blocked): %w", d, err)
	}
	return err
}

// Jobs are the given nodes' targets (a node without a usable BMC setting
// gets a Job with Err set, so it is reported, not skipped).
func Jobs(ns *config.Nodes, nodes []*config.Node, root string) []Job {
	jobs := make([]Job, len(nodes))
	for i, n := range nodes {
		t, err := TargetFor(ns, n, root)
		jobs[i] = Job{Node: n.Name, Target: t, Err: err}
	}
	return jobs
}
