package main

import (
	"fmt"
	"net"
	"strconv"
)

// capabilities lists the Linux capabilities serve needs under cfg, each
// with the key that calls for it. The shipped systemd unit grants none:
// `gatehouse check` prints these so the admin adds them with a drop-in
// (README, "Install as a service"), since a unit cannot read the config.
func capabilities(c *fileConfig) []string {
	var caps []string
	if c.VPN.Enabled {
		caps = append(caps, "CAP_NET_ADMIN (vpn.enabled: the TUN device)")
	}
	low := func(key, addr string) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 1024 {
			caps = append(caps, fmt.Sprintf("CAP_NET_BIND_SERVICE (%s %q: port below 1024)", key, addr))
		}
	}
	low("radius.listen", c.Radius.Listen)
	low("radius.accounting_listen", c.Radius.AccountingListen)
	low("server.metrics_listen", c.Server.MetricsListen)
	if c.VPN.Enabled {
		low("vpn.enroll_listen", c.VPN.EnrollListen)
		low("vpn.listen_port", net.JoinHostPort("", strconv.Itoa(c.VPN.ListenPort)))
	}
	return caps
}
