//go:build linux

package vpn

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
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

// Quick is the part of a wg-quick text a namespace client needs.
func Quick(t *testing.T, text string) (priv, peer Key, addrs, allowed []string) {
	q := parseWGQuick(t, text)
	for _, a := range q.Address {
		addrs = append(addrs, a.String())
	}
	for _, p := range q.AllowedIPs {
		allowed = append(allowed, p.String())
	}
	return q.PrivateKey, q.PeerKey, addrs, allowed
}

// Pool is the CA as a trust pool.
func (ca *testCA) Pool() *x509.CertPool { return ca.pool }
