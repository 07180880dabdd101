// Package netwait waits, with netlink, until the node's primary interface
// (found by its hardware address) is up with carrier and, when an address
// is wanted, has it. With Configure set it brings the interface up, adds the
// address and a default route itself (the lab image has nothing else that
// would). When no interface has the address yet it can call a driver
// loader once (see package kmod).
package netwait

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Target describes the interface to wait for.
type Target struct {
	HWAddr    net.HardwareAddr // required
	Addr      *net.IPNet       // optional IPv4 address (with prefix) it must have
	Gateway   net.IP           // optional default gateway (only used with Configure)
	Configure bool             // bring the link up, add Addr and the default route if missing
}

// Options for Wait.
type Options struct {
	// Namespace to work in; nil means the current network namespace.
	Namespace *netns.NsHandle
	// LoadDrivers is called (once) when no interface has the hardware
	// address; it should load the NIC's kernel module.
	LoadDrivers func(ctx context.Context) error
	Logger      *slog.Logger
	// OnStatus is called with a short description each time the state
	// changes ("no interface with hwaddr …", "eth0: link down", …).
	OnStatus func(status string)
	// Recheck is a fallback poll period in case a netlink notification is
	// lost (buffer overrun); default 2 s.
	Recheck time.Duration
	// ErrorAfter: while the target is still not ready after this long, an
	// ERROR names the hardware address, the state and every interface
	// seen (a node without its NIC driver otherwise waits silently), and
	// again each time the wait has doubled, up to every 10 minutes.
	// Default 30 s; negative: never. Waiting goes on regardless.
	ErrorAfter time.Duration
}

// DefaultErrorAfter is Options.ErrorAfter's default.
const DefaultErrorAfter = 30 * time.Second

// Result tells which interface was found.
type Result struct {
	Name  string
	Index int
	// Configured lists what Wait did itself: "up", "addr", "route".
	Configured []string
}

// Wait blocks until the target interface is ready or ctx ends (use
// context.WithTimeout for a deadline); on timeout the error tells the last
// state seen.
func Wait(ctx context.Context, t Target, o Options) (Result, error) {
	if len(t.HWAddr) == 0 {
		return Result{}, errors.New("netwait: no hardware address to wait for")
	}
	o = o.withDefaults()
	h, err := openHandle(o)
	if err != nil {
		return Result{}, err
	}
	defer h.Close()
	// subscribe before the first look, so no change is missed
	linkCh, addrCh, stop, err := subscribe(o)
	if err != nil {
		return Result{}, err
	}
	defer stop()
	w := &waiter{h: h, t: t, o: o}
	if t.Configure {
		w.loopbackUp()
	}
	return w.wait(ctx, linkCh, addrCh)
}

// withDefaults fills in the options left zero.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Recheck <= 0 {
		o.Recheck = 2 * time.Second
	}
	if o.ErrorAfter == 0 {
		o.ErrorAfter = DefaultErrorAfter
	}
	return o
}

// openHandle opens an rtnetlink handle, in o.Namespace if set. Only
// rtnetlink: a handle for all families also opens NETLINK_XFRM, which fails
// where xfrm_user is a module not loaded (Debian kernels).
func openHandle(o Options) (*netlink.Handle, error) {
	var (
		h   *netlink.Handle
		err error
	)
	if o.Namespace != nil {
		h, err = netlink.NewHandleAt(*o.Namespace, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	return h, nil
}

// subscribe subscribes to link and address updates; stop ends both.
func subscribe(o Options) (linkCh chan netlink.LinkUpdate, addrCh chan netlink.AddrUpdate, stop func(), err error) {
	done := make(chan struct{})
	linkCh = make(chan netlink.LinkUpdate, 64)
	addrCh = make(chan netlink.AddrUpdate, 64)
	subErr := func(err error) { o.Logger.Debug("netlink subscription", "err", err) }
	if err := netlink.LinkSubscribeWithOptions(linkCh, done, netlink.LinkSubscribeOptions{Namespace: o.Namespace, ErrorCallback: subErr}); err != nil {
		close(done)
		return nil, nil, nil, fmt.Errorf("subscribe to link updates: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrCh, done, netlink.AddrSubscribeOptions{Namespace: o.Namespace, ErrorCallback: subErr}); err != nil {
		close(done)
		go drain(linkCh)
		return nil, nil, nil, fmt.Errorf("subscribe to address updates: %w", err)
	}
	stop = func() {
		close(done)
		// the subscription goroutines block on a full channel; let them
		// finish and close their channels
		go drain(linkCh)
		go drain(addrCh)
	}
	return linkCh, addrCh, stop, nil
}

// wait checks the interface on every update and every o.Recheck until it
// is ready or ctx ends, logging each new status, and an ERROR after
// o.ErrorAfter and then less and less often.
func (w *waiter) wait(ctx context.Context, linkCh <-chan netlink.LinkUpdate, addrCh <-chan netlink.AddrUpdate) (Result, error) {
	o, t := w.o, w.t
	tick := time.NewTicker(o.Recheck)
	defer tick.Stop()
	start := time.Now()
	var loud <-chan time.Time // when to log the next ERROR
	next := o.ErrorAfter
	if next > 0 {
		t := time.NewTimer(next)
		defer t.Stop()
		loud = t.C
	}
	last := ""
	for {
		ready, status := w.check(ctx)
		if ready {
			o.Logger.Info("network ready", "interface", w.res.Name, "hwaddr", t.HWAddr.String(), "configured", w.res.Configured)
			return w.res, nil
		}
		if status != last {
			last = status
			o.Logger.Info("waiting for network", "status", status)
			if o.OnStatus != nil {
				o.OnStatus(status)
			}
		}
		select {
		case <-ctx.Done():
			return w.res, fmt.Errorf("network not ready (%s): %w", status, ctx.Err())
		case _, ok := <-linkCh:
			if !ok {
				linkCh = nil // subscription failed: rely on the ticker
			}
		case _, ok := <-addrCh:
			if !ok {
				addrCh = nil
			}
		case <-tick.C:
		case <-loud:
			o.Logger.Error("network interface not ready: is its driver in the image?",
				"hwaddr", t.HWAddr.String(), "status", last,
				"waited", time.Since(start).Round(time.Second).String(), "interfaces", w.interfaces())
			next = min(2*next, maxErrorEvery)
			loud = time.After(next)
		}
	}
}

// maxErrorEvery bounds the time between two "not ready" ERRORs.
const maxErrorEvery = 10 * time.Minute

// interfaces describes every interface seen: "eth0 52:54:00:12:34:56 up".
func (w *waiter) interfaces() string {
	links, err := w.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return "(list links: " + err.Error() + ")"
	}
	var b strings.Builder
	for _, l := range links {
		a := l.Attrs()
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		state := "down"
		if a.Flags&net.FlagUp != 0 {
			state = "up"
		}
		mac := a.HardwareAddr.String()
		if mac == "" {
			mac = "-"
		}
		fmt.Fprintf(&b, "%s %s %s", a.Name, mac, state)
	}
	if b.Len() == 0 {
		return "(none)"
	}
	return b.String()
}

func drain[T any](ch <-chan T) {
	for range ch {
	}
}

type waiter struct {
	h   *netlink.Handle
	t   Target
	o   Options
	res Result

	driversTried, upTried, addrTried, routeTried bool
}

// loopbackUp brings lo up (the lab image's rcS does it only later).
func (w *waiter) loopbackUp() {
	lo, err := w.h.LinkByName("lo")
	if err != nil || lo.Attrs().Flags&net.FlagUp != 0 {
		return
	}
	if err := w.h.LinkSetUp(lo); err != nil {
		w.o.Logger.Warn("set lo up", "err", err)
	}
}

func (w *waiter) find() (netlink.Link, error) {
	links, err := w.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	for _, l := range links {
		if bytes.Equal(l.Attrs().HardwareAddr, w.t.HWAddr) {
			return l, nil
		}
	}
	return nil, nil
}

// check looks at the current state, configures what it may, and reports
// whether the target is ready, else a short status.
func (w *waiter) check(ctx context.Context) (bool, string) {
	link, err := w.find()
	if err != nil {
		return false, fmt.Sprintf("list links: %v", err)
	}
	if link == nil && !w.driversTried && w.o.LoadDrivers != nil {
		w.driversTried = true
		if err := w.o.LoadDrivers(ctx); err != nil {
			w.o.Logger.Warn("loading NIC drivers", "err", err)
		}
		if link, err = w.find(); err != nil {
			return false, fmt.Sprintf("list links: %v", err)
		}
	}
	if link == nil {
		return false, "no interface with hwaddr " + w.t.HWAddr.String()
	}
	a := link.Attrs()
	w.res.Name, w.res.Index = a.Name, a.Index

	if a.Flags&net.FlagUp == 0 {
		if !w.t.Configure {
			return false, a.Name + ": link down"
		}
		if !w.upTried {
			w.upTried = true
			if err := w.h.LinkSetUp(link); err != nil {
				return false, fmt.Sprintf("%s: set link up: %v", a.Name, err)
			}
			w.res.Configured = append(w.res.Configured, "up")
			return w.check(ctx)
		}
		return false, a.Name + ": link down"
	}
	if w.t.Configure && w.t.Addr != nil && !w.addrTried {
		// add the address as soon as the link is up, carrier or not
		if ok, _ := w.hasAddr(link); !ok {
			w.addrTried = true
			if err := w.h.AddrAdd(link, &netlink.Addr{IPNet: w.t.Addr}); err != nil && !errors.Is(err, unix.EEXIST) {
				w.o.Logger.Warn("add address", "interface", a.Name, "addr", w.t.Addr.String(), "err", err)
			} else {
				w.res.Configured = append(w.res.Configured, "addr")
			}
		}
	}
	if !hasCarrier(a) {
		return false, a.Name + ": no carrier"
	}
	if w.t.Addr != nil {
		ok, err := w.hasAddr(link)
		if err != nil {
			return false, fmt.Sprintf("%s: list addresses: %v", a.Name, err)
		}
		if !ok {
			return false, fmt.Sprintf("%s: waiting for address %s", a.Name, w.t.Addr.IP)
		}
	}
	if w.t.Configure && w.t.Gateway != nil && !w.routeTried {
		w.routeTried = true
		if err := w.ensureDefaultRoute(link); err != nil {
			w.o.Logger.Warn("default route", "interface", a.Name, "gateway", w.t.Gateway.String(), "err", err)
		}
	}
	return true, a.Name + ": ready"
}

// hasCarrier: IFF_LOWER_UP is the driver's carrier, set at once.
// IFF_RUNNING and operstate UP follow through the kernel's linkwatch, which
// delays an event up to 1 s after the previous one: a virtual NIC whose
// carrier came up at probe time (virtio-net) waited ~1 s here for nothing.
// Sending on LOWER_UP is safe: a carrier present at open gets its queue
// attached by the open itself; one arriving later is an urgent linkwatch
// event, handled before its netlink update reaches us.
func hasCarrier(a *netlink.LinkAttrs) bool {
	return a.RawFlags&(unix.IFF_RUNNING|unix.IFF_LOWER_UP) != 0 || a.OperState == netlink.OperUp
}

func (w *waiter) hasAddr(link netlink.Link) (bool, error) {
	addrs, err := w.h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return false, err
	}
	for _, ad := range addrs {
		if ad.IPNet != nil && ad.IPNet.IP.Equal(w.t.Addr.IP) {
			return true, nil
		}
	}
	return false, nil
}

func (w *waiter) ensureDefaultRoute(link netlink.Link) error {
	routes, err := w.h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil || (r.Dst.IP.IsUnspecified() && prefix(r.Dst) == 0) {
			return nil // some default route exists already
		}
	}
	if err := w.h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: w.t.Gateway}); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	w.res.Configured = append(w.res.Configured, "route")
	return nil
}

func prefix(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}
