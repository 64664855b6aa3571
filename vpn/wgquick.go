package vpn

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// clientConfig renders the wg-quick configuration for r, without the
// [Interface] PrivateKey line: only the client knows its private key, and
// Enroll inserts it.
func (s *Server) clientConfig(r *record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# gatehouse VPN for %s (rule %q), valid until %s\n", r.Identity, r.Rule, r.NotAfter.UTC().Format(time.RFC3339))
	b.WriteString("[Interface]\n")
	addrs := []string{netip.PrefixFrom(r.Address, 32).String()}
	if r.Address6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(r.Address6, 128).String())
	}
	fmt.Fprintf(&b, "Address = %s\n", strings.Join(addrs, ", "))
	if dns := s.dnsFor(r.Access); len(dns) > 0 {
		fmt.Fprintf(&b, "DNS = %s\n", strings.Join(dns, ", "))
	}
	b.WriteString("\n[Peer]\n")
	fmt.Fprintf(&b, "PublicKey = %s\n", s.pubKey)
	fmt.Fprintf(&b, "Endpoint = %s\n", s.cfg.Endpoint)
	fmt.Fprintf(&b, "AllowedIPs = %s\n", strings.Join(routesFor(r.Access), ", "))
	if s.cfg.PersistentKeepalive > 0 {
		fmt.Fprintf(&b, "PersistentKeepalive = %d\n", s.cfg.PersistentKeepalive)
	}
	return b.String()
}

func (s *Server) dnsFor(a *policy.VPNAccess) []string {
	src := s.cfg.dns
	if a != nil && len(a.DNS) > 0 {
		src = a.DNS
	}
	out := make([]string, 0, len(src))
	for _, d := range src {
		out = append(out, d.String())
	}
	return out
}

// routesFor is the client's AllowedIPs: everything for a full tunnel, else
// the rule's routes, else its destinations' prefixes (split tunnel).
func routesFor(a *policy.VPNAccess) []string {
	if a == nil {
		return nil
	}
	if a.FullTunnel {
		return []string{"0.0.0.0/0", "::/0"}
	}
	var out []string
	seen := make(map[netip.Prefix]bool)
	add := func(p netip.Prefix) {
		p = p.Masked()
		if p.IsValid() && !seen[p] {
			seen[p] = true
			out = append(out, p.String())
		}
	}
	if len(a.Routes) > 0 {
		for _, p := range a.Routes {
			add(p)
		}
		return out
	}
	for _, d := range a.Allow {
		add(d.Prefix)
	}
	return out
}
