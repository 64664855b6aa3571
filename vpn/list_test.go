package vpn

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUAPIPeers parses a UAPI "get" answer as wireguard-go writes it.
func TestUAPIPeers(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "wg.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	k1, k2 := Key{1}, Key{2}
	answer := "private_key=" + strings.Repeat("ab", 32) + "\nlisten_port=51820\n" +
		"public_key=" + k1.hex() + "\nendpoint=192.0.2.1:4500\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\nrx_bytes=10\ntx_bytes=20\nallowed_ip=100.96.0.2/32\n" +
		"public_key=" + k2.hex() + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\n" +
		"errno=0\n\n"
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		r.ReadString('\n') // get=1
		r.ReadString('\n') // blank
		c.Write([]byte(answer))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	peers, err := uapiPeers(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := peers[k1], peers[k2]
	if len(peers) != 2 || p1.Endpoint != "192.0.2.1:4500" || p1.RxBytes != 10 || p1.TxBytes != 20 || !p1.LastHandshake.Equal(time.Unix(1700000000, 5)) {
		t.Fatalf("peer 1: %+v", p1)
	}
	if !p2.LastHandshake.IsZero() || p2.Endpoint != "" {
		t.Fatalf("peer 2: %+v", p2)
	}
}
