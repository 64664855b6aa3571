package vpn

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"

	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
)

// openKernelTUN creates the TUN interface, gives it the server's addresses
// (with the pool's prefix length, so the kernel routes the pool into it) and
// brings it up. It runs iproute2's `ip`: simple, visible to admins in logs,
// and no netlink code to maintain. Forwarding (net.ipv4.ip_forward) and NAT
// or routes back to the pool on the protected networks are the admin's job.
func (s *Server) openKernelTUN() (tun.Device, error) {
	tdev, err := tun.CreateTUN(s.cfg.Interface, s.cfg.MTU)
	if err != nil {
		return nil, fmt.Errorf("vpn: create TUN %s: %w", s.cfg.Interface, err)
	}
	name, err := tdev.Name()
	if err != nil {
		tdev.Close()
		return nil, fmt.Errorf("vpn: TUN name: %w", err)
	}
	cmds := [][]string{
		{"addr", "replace", netip.PrefixFrom(s.cfg.gateway, s.cfg.pool.Bits()).String(), "dev", name},
	}
	if s.cfg.gateway6.IsValid() {
		cmds = append(cmds, []string{"-6", "addr", "replace", netip.PrefixFrom(s.cfg.gateway6, s.cfg.pool6.Bits()).String(), "dev", name})
	}
	cmds = append(cmds, []string{"link", "set", "dev", name, "up"})
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			tdev.Close()
			return nil, fmt.Errorf("vpn: ip %s: %w: %s", strings.Join(c, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return tdev, nil
}

// serveUAPI exposes the device's UAPI socket (/var/run/wireguard/NAME.sock)
// as wireguard-go's main does, so `wg show NAME` works. stop closes it and
// waits for the accept loop.
func (s *Server) serveUAPI(wg *sync.WaitGroup) (stop func(), err error) {
	f, err := ipc.UAPIOpen(s.cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("vpn: UAPI socket: %w", err)
	}
	ln, err := ipc.UAPIListen(s.cfg.Interface, f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("vpn: UAPI listen: %w", err)
	}
	var conns sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				conns.Wait()
				return
			}
			conns.Add(1)
			go func(c net.Conn) {
				defer conns.Done()
				s.dev.IpcHandle(c)
			}(c)
		}
	}()
	return func() { ln.Close() }, nil
}
