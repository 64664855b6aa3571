package filter

import (
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
)

// fakeTUN records writes and serves queued reads.
type fakeTUN struct {
	written [][]byte
	reads   [][]byte
}

func (f *fakeTUN) File() *os.File           { return nil }
func (f *fakeTUN) MTU() (int, error)        { return 1420, nil }
func (f *fakeTUN) Name() (string, error)    { return "fake", nil }
func (f *fakeTUN) Events() <-chan tun.Event { return nil }
func (f *fakeTUN) Close() error             { return nil }
func (f *fakeTUN) BatchSize() int           { return 128 }
func (f *fakeTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		f.written = append(f.written, b[offset:])
	}
	return len(bufs), nil
}
func (f *fakeTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := 0
	for n < len(bufs) && len(f.reads) > 0 {
		sizes[n] = copy(bufs[n][offset:], f.reads[0])
		f.reads = f.reads[1:]
		n++
	}
	return n, nil
}

const off = 16

func withOffset(p []byte) []byte { return append(make([]byte, off), p...) }

func TestDeviceWriteKeepsOrder(t *testing.T) {
	ft := &fakeTUN{}
	d := Wrap(ft, newTestFilter(t))
	in := [][]byte{
		pkt("100.96.0.2", "10.10.0.1", protoTCP, 1, 1), // ok
		pkt("100.96.0.2", "10.30.0.1", protoTCP, 2, 2), // not allowed
		pkt("100.96.0.2", "10.10.0.2", protoTCP, 3, 3), // ok
		{0x45}, // malformed
		pkt("100.96.0.2", "10.10.0.3", protoUDP, 4, 4), // ok
		pkt("100.96.0.9", "10.10.0.3", protoUDP, 5, 5), // no peer
	}
	bufs := make([][]byte, len(in))
	for i, p := range in {
		bufs[i] = withOffset(p)
	}
	n, err := d.Write(bufs, off)
	if err != nil || n != len(in) {
		t.Fatal(n, err)
	}
	if len(ft.written) != 3 {
		t.Fatalf("forwarded %d", len(ft.written))
	}
	for i, want := range []int{0, 2, 4} {
		if string(ft.written[i]) != string(in[want]) {
			t.Errorf("forwarded[%d] is not packet %d", i, want)
		}
	}
}

func TestDeviceReadBlanksDropped(t *testing.T) {
	f := newTestFilter(t)
	f.Outbound(pkt("100.96.0.2", "10.10.0.1", protoTCP, 1000, 80), f.Now())
	ft := &fakeTUN{reads: [][]byte{
		pkt("10.10.0.1", "100.96.0.2", protoTCP, 80, 1000), // reply: ok
		pkt("10.10.0.1", "100.96.0.2", protoTCP, 81, 1000), // no flow
		pkt("10.10.0.1", "100.96.0.2", protoTCP, 80, 1000), // ok
	}}
	d := Wrap(ft, f)
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, 4)
	n, err := d.Read(bufs, sizes, off)
	if err != nil || n != 3 {
		t.Fatal(n, err)
	}
	if sizes[0] == 0 || sizes[1] != 0 || sizes[2] == 0 {
		t.Fatalf("sizes %v", sizes[:n])
	}
}

// BenchmarkDeviceWrite runs a batch of 128 allowed packets through the
// wrapper (1,000 rules, 10,000 peers); ns/op is per batch.
func BenchmarkDeviceWrite(b *testing.B) {
	f, out, _ := benchFilter(b, 1000, 10000)
	d := Wrap(&nullTUN{}, f)
	bufs := make([][]byte, len(out))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(bufs, out)
		d.Write(bufs, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out)), "ns/packet")
}

type nullTUN struct{ fakeTUN }

func (nullTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }

// BenchmarkDeviceWriteBulk is a bulk transfer: a batch of 128 packets of one
// flow, as wireguard-go hands over a TCP stream; ns/op is per batch.
func BenchmarkDeviceWriteBulk(b *testing.B) {
	f, out, _ := benchFilter(b, 1000, 10000)
	d := Wrap(&nullTUN{}, f)
	bufs := make([][]byte, len(out))
	same := make([][]byte, len(out))
	for i := range same {
		same[i] = out[0]
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		copy(bufs, same)
		d.Write(bufs, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(out)), "ns/packet")
}
