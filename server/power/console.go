package power

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"
)

// EscapeHelp says how to leave Console (see EscapeReader).
const EscapeHelp = "Ctrl-] or ~. at the start of a line"

// ConsoleOptions tune Console.
type ConsoleOptions struct {
	// Force deactivates a SOL session someone else left active first
	// (a BMC allows one at a time).
	Force bool
	// ConnectTimeout bounds opening the session and activating SOL.
	ConnectTimeout time.Duration
	// Activated is called once SOL is active (e.g. to say how to quit).
	Activated func()
}

// Console attaches in and out to the node's serial console through IPMI
// Serial-over-LAN (go-ipmi's SOL payload) until in ends (EscapeReader
// turns the escape into an end), the BMC ends the session, or ctx ends.
// Only lanplus BMCs have it.
func Console(ctx context.Context, t Target, in io.Reader, out io.Writer, opts ConsoleOptions) error {
	if t.Interface != "" && t.Interface != "lanplus" {
		return fmt.Errorf("console: node %s's BMC interface is %q; the console needs IPMI SOL (interface = \"lanplus\"; "+
			"most Redfish BMCs speak IPMI too, and their Redfish serial console is SSH to the BMC)", t.Node, t.Interface)
	}
	c, err := newIPMI(t)
	if err != nil {
		return err
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	cl, err := c.ipmiClient(cctx)
	if err != nil {
		return timeoutError(cctx, err, opts.ConnectTimeout)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = cl.Close(closeCtx)
	}()
	sol := func(ctx context.Context) error {
		_, err := cl.DeactivatePayload(ctx, &transport.DeactivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1})
		return err
	}
	if opts.Force {
		_ = sol(cctx) // not active is fine
	}
	_, err = cl.ActivatePayload(cctx, &transport.ActivatePayloadRequest{PayloadType: types.PayloadTypeSOL, PayloadInstance: 1,
		EnableEncryption: true, EnableAuthentication: true})
	if err != nil {
		err = timeoutError(cctx, err, opts.ConnectTimeout)
		return fmt.Errorf("activate SOL on %s (already in use? --force takes it over): %w", t.Address, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = sol(dctx)
	}()
	if opts.Activated != nil {
		opts.Activated()
	}
	err = cl.SOLStream(ctx, in, out, nil)
	switch {
	case errors.Is(err, context.Canceled):
		return nil
	case err != nil && strings.Contains(err.Error(), "SOL deactivation"):
		return fmt.Errorf("the BMC ended the console (node powered off or cycled, or another session took it over): %w", err)
	}
	return err
}

// EscapeReader passes in through until the escape: Ctrl-] (0x1d)
// anywhere, or "~." at the start of a line (after CR or LF, or first);
// then it reports io.EOF. A "~" at a line start not followed by "." is
// passed on with the next byte.
type EscapeReader struct {
	r         *bufio.Reader
	lineStart bool
	done      bool
}

// NewEscapeReader wraps in.
func NewEscapeReader(in io.Reader) *EscapeReader {
	return &EscapeReader{r: bufio.NewReader(in), lineStart: true}
}

// Read returns one byte at a time (a console is typed, not streamed).
func (e *EscapeReader) Read(p []byte) (int, error) {
	if e.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	b, err := e.r.ReadByte()
	if err != nil {
		return 0, err
	}
	switch {
	case b == 0x1d:
		e.done = true
		return 0, io.EOF
	case b == '~' && e.lineStart:
		next, err := e.r.Peek(1)
		if err == nil && next[0] == '.' {
			e.done = true
			return 0, io.EOF
		}
	}
	e.lineStart = b == '\r' || b == '\n'
	p[0] = b
	return 1, nil
}
