package filter

import (
	"fmt"
	"net/netip"
	"testing"
)

// allocFilter is a filter with 100 /24 rules for 300 peers and 128
// allowed flows' packets each way, plus packets the filter drops.
func allocFilter(t *testing.T) (f *Filter, out, in, bad [][]byte) {
	t.Helper()
	f = New(Config{})
	acc := bigRules(100)
	f.Update(func(u *Update) {
		for i := 0; i < 300; i++ {
			u.Set(acc, netip.AddrFrom4([4]byte{100, 96, byte((i + 2) >> 8), byte(i + 2)}))
		}
	})
	for i := 0; i < 128; i++ {
		c := fmt.Sprintf("100.96.0.%d", 2+i)
		s := fmt.Sprintf("10.0.%d.9", i%100)
		out = append(out, pkt(c, s, protoTCP, uint16(30000+i), 443))
		in = append(in, pkt(s, c, protoTCP, 443, uint16(30000+i)))
	}
	bad = [][]byte{
		pkt("100.96.0.2", "10.200.0.1", protoTCP, 1, 443), // no rule
		pkt("100.96.0.2", "10.0.0.9", protoTCP, 1, 80),    // port not allowed
		pkt("100.96.9.9", "10.0.0.9", protoTCP, 1, 443),   // no such peer
		pkt("10.0.5.9", "100.96.0.2", protoTCP, 443, 1),   // unsolicited inbound
		{0x45, 0, 0}, // malformed
	}
	return f, out, in, bad
}

// TestPacketPathAllocs asserts what the benchmarks report: the filter's
// packet paths (client → network, replies back, drops, and the TUN
// wrapper's batch Read and Write) allocate nothing per packet once the
// flows exist.
func TestPacketPathAllocs(t *testing.T) {
	f, out, in, bad := allocFilter(t)
	now := f.Now()
	for _, p := range out { // the flows exist before measuring
		if r := f.Outbound(p, now); r != Accept {
			t.Fatalf("setup: outbound dropped (%v)", r)
		}
	}
	ft := &fakeTUN{}
	dev := Wrap(&nullTUN{}, f)
	rdev := Wrap(ft, f)
	bufs := make([][]byte, len(out))
	rbufs := make([][]byte, len(in))
	for i := range rbufs {
		rbufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, len(in))
	for _, tc := range []struct {
		name string
		run  func()
	}{
		{"Outbound", func() {
			for _, p := range out {
				if f.Outbound(p, now) != Accept {
					t.Fatal("outbound dropped")
				}
			}
		}},
		{"Inbound", func() {
			for _, p := range in {
				if f.Inbound(p, now) != Accept {
					t.Fatal("reply dropped")
				}
			}
		}},
		{"drops", func() {
			for _, p := range bad {
				if f.Outbound(p, now) == Accept && f.Inbound(p, now) == Accept {
					t.Fatal("bad packet accepted both ways")
				}
			}
		}},
		{"Device.Write", func() {
			copy(bufs, out)
			dev.Write(bufs, 0)
		}},
		{"Device.Read", func() {
			ft.reads = in
			if n, _ := rdev.Read(rbufs, sizes, 0); n != len(in) {
				t.Fatalf("read %d", n)
			}
		}},
	} {
		if n := testing.AllocsPerRun(20, tc.run); n != 0 {
			t.Errorf("%s: %v allocations per batch of packets, want 0", tc.name, n)
		}
	}
}
