//go:build linux

package radius

import (
	"net"
	"testing"
	"time"
)

// TestReceiveEmpty: a real UDP socket reads as empty, then not while a
// datagram waits, then empty again once it is read; an unknown socket is
// never "empty" (the reader then always hands datagrams to the workers).
func TestReceiveEmpty(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, fd, err := setReceiveBuffer(c, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !receiveEmpty(fd) {
		t.Fatal("new socket not empty")
	}
	s, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); receiveEmpty(fd); {
		if time.Now().After(deadline) {
			t.Fatal("a waiting datagram left the socket empty")
		}
		time.Sleep(time.Millisecond)
	}
	var b [8]byte
	if _, _, err := c.ReadFromUDP(b[:]); err != nil {
		t.Fatal(err)
	}
	if !receiveEmpty(fd) {
		t.Fatal("not empty after the datagram was read")
	}
	if receiveEmpty(-1) {
		t.Fatal("unknown socket reported empty")
	}
}
