package filter

import "golang.zx2c4.com/wireguard/tun"

// Device wraps a tun.Device with a Filter. wireguard-go calls Write with
// packets from peers (client → network) and Read for packets to peers
// (network → client).
type Device struct {
	tun.Device
	f *Filter
}

// Wrap returns dev filtered by f.
func Wrap(dev tun.Device, f *Filter) *Device { return &Device{Device: dev, f: f} }

// Read reads a batch from the underlying device and blanks (size 0) every
// packet the filter drops; wireguard-go's RoutineReadFromTUN skips packets
// of size < 1, so buffers keep their positions.
func (d *Device) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := d.Device.Read(bufs, sizes, offset)
	if n > 0 {
		now := d.f.Now()
		var c batchCache
		for i := 0; i < n; i++ {
			if sizes[i] <= 0 {
				continue
			}
			if d.f.inbound(bufs[i][offset:offset+sizes[i]], now, &c) != Accept {
				sizes[i] = 0
			}
		}
	}
	return n, err
}

// Write forwards the packets the filter accepts, in their original order,
// compacting bufs in place (wireguard-go releases buffers through its own
// element list, not through bufs). It reports every packet as written.
func (d *Device) Write(bufs [][]byte, offset int) (int, error) {
	now := d.f.Now()
	var c batchCache
	j := 0
	for i := range bufs {
		if d.f.outbound(bufs[i][offset:], now, &c) == Accept {
			bufs[j] = bufs[i]
			j++
		}
	}
	if j == 0 {
		return len(bufs), nil
	}
	if _, err := d.Device.Write(bufs[:j], offset); err != nil {
		return 0, err
	}
	return len(bufs), nil
}
