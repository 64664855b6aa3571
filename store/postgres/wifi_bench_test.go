package postgres

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// BenchmarkWiFiReplay measures the replayer pushing spooled accounting
// records into radius_accounting (batches of 1000, one multi-row INSERT …
// ON CONFLICT DO NOTHING per batch, the cursor fsynced after each commit):
// see records/s. The spool is filled before the timer starts.
func BenchmarkWiFiReplay(b *testing.B) {
	pg := pgtest.Start(b)
	db, err := Open(Config{DSN: pg.CreateDatabase("gh_bench")}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	if _, err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	sp, err := spool.Open(spool.Config{Dir: b.TempDir(), Node: "bench"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	st, in := uint32(60), uint64(123456)
	rec, _ := json.Marshal(wifi.Acct{Time: time.Now().UTC(), Status: "interim", SessionID: "80000001", UserName: "alice@corp.example.com",
		NAS: "ap-17", NASAddr: "10.1.2.3", CallingStation: "02-11-22-33-44-55", FramedIP: "10.20.0.7", SessionTime: &st,
		InputOctets: &in, OutputOctets: &in, ClassToken: "0123456789abcdef0123456789abcdef"})
	batch := make([][]byte, 500)
	for i := range batch {
		batch[i] = rec
	}
	for n := 0; n < b.N; n += len(batch) {
		if err := sp.Append(wifi.KindAcct, batch[:min(len(batch), b.N-n)]...); err != nil {
			b.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() { sp.Run(rctx, db.WiFi()); close(done) }()
	for sp.Stats().Records > 0 {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/el.Seconds(), "records/s")
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM radius_accounting").Scan(&n); err != nil || n != b.N {
		b.Fatalf("%d rows, want %d (%v)", n, b.N, err)
	}
}
