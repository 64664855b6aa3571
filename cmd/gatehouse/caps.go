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

// capNetAdmin is CAP_NET_ADMIN's number (linux/capability.h).
const capNetAdmin = 12

// checkNetAdmin fails early, naming the key and the fix, when the VPN is
// enabled and the process lacks CAP_NET_ADMIN (creating the TUN device
// would fail with a bare "operation not permitted"). Ports below 1024 are
// not checked: net.ipv4.ip_unprivileged_port_start may allow them.
func checkNetAdmin(c *fileConfig, file string) error {
	if !c.VPN.Enabled {
		return nil
	}
	have, err := effectiveCap(capNetAdmin)
	if err != nil || have {
		return nil // unknown: let the TUN device say
	}
	return &configError{fmt.Sprintf("%s: vpn.enabled = true needs CAP_NET_ADMIN, which this process lacks; "+
		"under systemd add it with a drop-in (README, \"Install as a service\")", file)}
}
