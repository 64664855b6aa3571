//go:build linux

package vpn

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"
)

// Namespace helpers for package vpn_test (netns_multinode_linux_test.go).

// ServerPEM issues a server certificate for ip, PEM.
func (ca *testCA) ServerPEM(t *testing.T, ip string) (cert, key string) {
	return serverCertFor(t, ca, ip)
}

// DialInNetns dials from inside namespace ns.
func DialInNetns(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := inNetnsErr(ns, func() (any, error) { return (&net.Dialer{}).DialContext(ctx, network, addr) })
		if err != nil {
			return nil, err
		}
		return c.(net.Conn), nil
	}
}

// EchoInNetns serves a TCP echo on addr inside ns until the test ends.
func EchoInNetns(t *testing.T, ns, addr string) {
	ln := inNetns(t, ns, func() (any, error) { return net.Listen("tcp", addr) }).(net.Listener)
	t.Cleanup(func() { ln.Close() })
	go echoServe(ln)
}

func CheckNetnsTools(t *testing.T) { checkNetnsTools(t) }

func Run(t *testing.T, name string, args ...string) string { return run(t, name, args...) }

// ClientInNetns runs a wireguard-go client as interface ifc in namespace
// ns from the wg-quick text, towards endpoint with the given keepalive; it
// returns the client's public key.
func ClientInNetns(t *testing.T, ns, ifc, dir, text, endpoint string, keepalive int) Key {
	q := parseWGQuick(t, text)
	q.Endpoint, q.Keepalive = endpoint, keepalive
	startWGClient(t, ns, ifc, "wireguard-go", dir, q)
	return q.PrivateKey.Public()
}

// ReachFrom dials addr from namespace ns and checks a TCP echo.
func ReachFrom(ns, addr string, timeout time.Duration) error {
	return reachVia(DialInNetns(ns), addr, timeout)
}

// HelperProc is a test helper process in a namespace.
type HelperProc = helperProc

// StartHelperProc runs the test helperTest in namespace ns with cfg (JSON)
// in the environment variable env and waits for its READY line.
func StartHelperProc(t *testing.T, ns, helperTest, env string, cfg any, wait time.Duration) *HelperProc {
	return startHelperProc(t, ns, helperTest, env, cfg, wait)
}

// WaitLine waits for the helper's next line starting with prefix.
func (h *helperProc) WaitLine(t *testing.T, prefix string) string { return h.waitLine(t, prefix) }

// Signal sends sig to the helper process.
func (h *helperProc) Signal(sig os.Signal) error { return h.cmd.Process.Signal(sig) }

// Pool is the CA as a trust pool.
func (ca *testCA) Pool() *x509.CertPool { return ca.pool }
