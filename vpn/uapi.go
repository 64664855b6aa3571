package vpn

import (
	"net/netip"
	"strconv"
	"strings"
)

// uapiWriter produces wireguard-go UAPI "set" text (see
// https://www.wireguard.com/xplatform/). It is the only place in gatehouse
// that builds UAPI text; keys are written in hex as the protocol requires.
// The text carries private keys: never log it.
type uapiWriter struct {
	b strings.Builder
}

func (w *uapiWriter) line(k, v string) {
	w.b.WriteString(k)
	w.b.WriteByte('=')
	w.b.WriteString(v)
	w.b.WriteByte('\n')
}

// Interface settings; they must come before any peer.
func (w *uapiWriter) privateKey(k Key) { w.line("private_key", k.hex()) }
func (w *uapiWriter) listenPort(p int) { w.line("listen_port", strconv.Itoa(p)) }
func (w *uapiWriter) replacePeers()    { w.line("replace_peers", "true") }

// peer starts a peer section; the calls below apply to it.
func (w *uapiWriter) peer(k Key) { w.line("public_key", k.hex()) }

// removePeer removes the peer with key k.
func (w *uapiWriter) removePeer(k Key) {
	w.peer(k)
	w.line("remove", "true")
}

// addPeer writes a complete new peer: key, tunnel addresses.
func (w *uapiWriter) addPeer(k Key, addrs ...netip.Addr) {
	w.peer(k)
	w.line("replace_allowed_ips", "true")
	for _, a := range addrs {
		if a.IsValid() {
			w.line("allowed_ip", netip.PrefixFrom(a, a.BitLen()).String())
		}
	}
}

// endpoint, allowedIP and keepalive apply to the current peer (client
// side and tests).
func (w *uapiWriter) endpoint(hostport string) { w.line("endpoint", hostport) }
func (w *uapiWriter) allowedIP(p netip.Prefix) { w.line("allowed_ip", p.String()) }
func (w *uapiWriter) keepalive(seconds int) {
	w.line("persistent_keepalive_interval", strconv.Itoa(seconds))
}

func (w *uapiWriter) String() string { return w.b.String() }
