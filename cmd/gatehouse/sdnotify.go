package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
)

// sdNotifier tells systemd about the service's state (sd_notify(3)): one
// datagram per message to the unix socket named by $NOTIFY_SOCKET. The unit
// is Type=notify: READY=1 once every server is up, RELOADING=1 and READY=1
// around a reload requested by an admin, STOPPING=1 at shutdown. A nil
// *sdNotifier (not started by systemd) sends nothing.
type sdNotifier struct {
	addr  *net.UnixAddr
	ready atomic.Bool // READY=1 was sent: reloads may be announced
}

// newSDNotifier returns a notifier for the socket in env (the value of
// $NOTIFY_SOCKET), or nil if env is empty. A name starting with '@' is an
// abstract socket; Go maps the '@' to the leading NUL byte.
func newSDNotifier(env string) (*sdNotifier, error) {
	if env == "" {
		return nil, nil
	}
	if !strings.HasPrefix(env, "/") && !strings.HasPrefix(env, "@") {
		return nil, fmt.Errorf("serve: NOTIFY_SOCKET %q: only unix sockets are supported", env)
	}
	return &sdNotifier{addr: &net.UnixAddr{Name: env, Net: "unixgram"}}, nil
}

// notify sends one message, lines of VAR=value.
func (n *sdNotifier) notify(state string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("serve: sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("serve: sd_notify: %w", err)
	}
	return nil
}

// reloading tells systemd a reload started. MONOTONIC_USEC (CLOCK_MONOTONIC
// in µs) is what systemd ≥ 253 uses to match the reload to its request;
// older versions ignore it.
func (n *sdNotifier) reloading() error {
	if n == nil {
		return nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return fmt.Errorf("serve: sd_notify: %w", err)
	}
	return n.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=reloading the configuration", usec))
}

// up sends READY=1 at the end of start-up and allows reload messages.
func (n *sdNotifier) up() error {
	if n == nil {
		return nil
	}
	err := n.notify("READY=1\nSTATUS=serving")
	n.ready.Store(true)
	return err
}

// forceReload runs a reload an admin asked for (SIGHUP, the control
// socket), bracketed by RELOADING=1 and READY=1 whatever its outcome: the
// service stays up with the policy in force when the new one is refused.
// Before start-up finished nothing is sent: a READY=1 then would tell
// systemd the service is up before its listeners are.
func (r *reloader) forceReload(ctx context.Context) {
	tell := r.notify != nil && r.notify.ready.Load()
	if tell {
		if err := r.notify.reloading(); err != nil {
			r.log.Warn("systemd not told of the reload", "err", err)
		}
	}
	r.force = true
	r.attempt(ctx)
	if tell {
		if err := r.notify.notify("READY=1\nSTATUS=serving"); err != nil {
			r.log.Warn("systemd not told the reload finished", "err", err)
		}
	}
}
