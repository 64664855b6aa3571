//go:build !linux

package vpn

import (
	"errors"
	"sync"

	"golang.zx2c4.com/wireguard/tun"
)

func (s *Server) openKernelTUN() (tun.Device, error) {
	return nil, errors.New("vpn: kernel TUN is supported on Linux only; set use_netstack")
}

func (s *Server) serveUAPI(wg *sync.WaitGroup) (func(), error) { return func() {}, nil }
