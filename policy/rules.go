package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// rule is a compiled [[policy]] rule.
type rule struct {
	name     string
	kind     int8 // -1 any, else Kind
	groups   []groupRef
	identity []identityCond
	deny     bool
	wifi     WiFi
	vpn      *VPNAccess // nil: the rule gives no VPN access
}

// groupRef names a group by DN (key set) or by the value of its first RDN.
type groupRef struct {
	dn   dnKey
	name string
}

type identityCond struct {
	field  string
	values []string // exact, or "*suffix"
}

func compileRule(i int, c *RuleConfig, errs *fieldErrors) *rule {
	key := fmt.Sprintf("policy[%d]", i)
	n := len(*errs)
	r := &rule{name: c.Name, kind: -1, deny: c.Deny}
	if r.name == "" {
		errs.add(key+".name", "", errors.New("every rule needs a name"))
	}
	switch c.Kind {
	case "":
	case "user":
		r.kind = int8(KindUser)
	case "device":
		r.kind = int8(KindDevice)
	default:
		errs.add(key+".kind", c.Kind, errors.New(`must be "user" or "device"`))
	}
	switch {
	case c.Everyone && len(c.Groups) > 0:
		errs.add(key+".everyone", "true", errors.New("everyone = true and groups exclude each other: remove one"))
	case c.Groups != nil && len(c.Groups) == 0:
		errs.add(key+".groups", "", errors.New("empty list matches nobody; write everyone = true to match every directory entry"))
	case len(c.Groups) == 0 && len(c.Identity) == 0 && !c.Everyone:
		errs.add(key, "", errors.New("the rule names no groups and no identity conditions; write everyone = true to match every directory entry"))
	}
	for j, g := range c.Groups {
		if strings.Contains(g, "=") {
			k, _, err := parseDN(g)
			if err != nil {
				errs.add(fmt.Sprintf("%s.groups[%d]", key, j), g, fmt.Errorf("bad DN: %w", err))
				continue
			}
			r.groups = append(r.groups, groupRef{dn: k})
		} else if g == "" {
			errs.add(fmt.Sprintf("%s.groups[%d]", key, j), g, errors.New("empty group"))
		} else {
			r.groups = append(r.groups, groupRef{name: g})
		}
	}
	for f, vals := range c.Identity {
		name, ok := identityFields[f]
		if !ok && f != "ou" {
			errs.add(key+".identity."+f, "", errors.New("unknown identity field"))
			continue
		}
		if f == "ou" {
			name = "ou"
		}
		if len(vals) == 0 {
			errs.add(key+".identity."+f, "", errors.New("needs at least one value"))
		}
		r.identity = append(r.identity, identityCond{field: name, values: vals})
	}
	if w := c.WiFi; w != nil {
		r.wifi = WiFi{Permitted: true, VLAN: string(w.VLAN), SessionTimeout: w.SessionTimeout.Duration, FilterID: string(w.FilterID), Class: string(w.Class)}
		if w.VLAN != "" {
			if v, err := strconv.Atoi(string(w.VLAN)); err == nil && (v < 1 || v > 4094) {
				errs.add(key+".wifi.vlan", string(w.VLAN), errors.New("VLAN number must be 1-4094"))
			}
		}
		if w.SessionTimeout.Duration < 0 || w.SessionTimeout.Duration%time.Second != 0 {
			errs.add(key+".wifi.session_timeout", w.SessionTimeout.String(), errors.New("must be a positive whole number of seconds"))
		}
	}
	if v := c.VPN; v != nil {
		r.vpn = compileVPN(key+".vpn", v, errs)
	}
	if r.deny && (c.WiFi != nil || c.VPN != nil) {
		errs.add(key+".deny", "true", errors.New("a deny rule cannot also grant wifi or vpn access"))
	}
	if len(*errs) > n {
		return nil
	}
	return r
}

func compileVPN(key string, c *VPNConfig, errs *fieldErrors) *VPNAccess {
	v := &VPNAccess{FullTunnel: c.FullTunnel}
	for i, s := range c.Allow {
		d, err := ParseAllow(s)
		if err != nil {
			errs.add(fmt.Sprintf("%s.allow[%d]", key, i), s, err)
			continue
		}
		v.Allow = append(v.Allow, d...)
	}
	for i, s := range c.DNS {
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs.add(fmt.Sprintf("%s.dns[%d]", key, i), s, errors.New("bad IP address"))
			continue
		}
		v.DNS = append(v.DNS, a)
	}
	for i, s := range c.Routes {
		p, err := parsePrefix(s)
		if err != nil {
			errs.add(fmt.Sprintf("%s.routes[%d]", key, i), s, err)
			continue
		}
		v.Routes = append(v.Routes, p)
	}
	if len(c.Routes) == 0 {
		seen := map[netip.Prefix]bool{}
		for _, d := range v.Allow {
			if !seen[d.Prefix] {
				seen[d.Prefix] = true
				v.Routes = append(v.Routes, d.Prefix)
			}
		}
	}
	return v
}

// ParseAllow parses one VPN allow entry: "PREFIX [PROTO[/PORTS]]...", e.g.
// "10.20.0.5 tcp/22,443 udp/53" or "10.1.0.0/16 icmp". It returns one
// Destination per protocol named (one with ProtoAny if none is).
func ParseAllow(s string) ([]Destination, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, errors.New("empty entry")
	}
	p, err := parsePrefix(f[0])
	if err != nil {
		return nil, err
	}
	if len(f) == 1 {
		return []Destination{{Prefix: p}}, nil
	}
	out := make([]Destination, 0, len(f)-1)
	for _, spec := range f[1:] {
		proto, ports, hasPorts := strings.Cut(strings.ToLower(spec), "/")
		d := Destination{Prefix: p}
		switch proto {
		case "tcp":
			d.Proto = ProtoTCP
		case "udp":
			d.Proto = ProtoUDP
		case "icmp":
			d.Proto = ProtoICMP
		default:
			return nil, fmt.Errorf("bad protocol %q (tcp, udp or icmp)", spec)
		}
		if hasPorts {
			if d.Proto == ProtoICMP {
				return nil, errors.New("icmp takes no ports")
			}
			for _, pr := range strings.Split(ports, ",") {
				r, err := parsePortRange(pr)
				if err != nil {
					return nil, err
				}
				d.Ports = append(d.Ports, r)
			}
		}
		out = append(out, d)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, errors.New("bad prefix")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errors.New("bad prefix")
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("bad prefix: host bits set (did you mean %s?)", p.Masked())
	}
	return p, nil
}

func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil || a == 0 {
		return PortRange{}, fmt.Errorf("bad port %q", s)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
			return PortRange{}, fmt.Errorf("bad port range %q", s)
		}
	}
	return PortRange{First: uint16(a), Last: uint16(b)}, nil
}

// entryGroup is a group of a directory entry, reduced for matching.
type entryGroup struct {
	dn   dnKey
	name string
}

func (r *rule) matches(id *Identity, groups []entryGroup) bool {
	if r.kind >= 0 && Kind(r.kind) != id.Kind {
		return false
	}
	if len(r.groups) > 0 && !r.inGroups(groups) {
		return false
	}
	for _, c := range r.identity {
		if !c.matches(id) {
			return false
		}
	}
	return true
}

func (r *rule) inGroups(groups []entryGroup) bool {
	for _, ref := range r.groups {
		for _, g := range groups {
			if ref.dn != "" && ref.dn == g.dn || ref.name != "" && strings.EqualFold(ref.name, g.name) {
				return true
			}
		}
	}
	return false
}

func (c *identityCond) matches(id *Identity) bool {
	fold := c.field == "upn" || c.field == "email" || c.field == "dns"
	for _, have := range id.values(c.field) {
		for _, want := range c.values {
			switch {
			case strings.HasPrefix(want, "*"):
				if hasSuffixFold(have, want[1:]) && (fold || strings.HasSuffix(have, want[1:])) {
					return true
				}
			case fold && strings.EqualFold(have, want), have == want:
				return true
			}
		}
	}
	return false
}
