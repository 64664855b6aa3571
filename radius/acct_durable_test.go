package radius

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// acctRequest encodes an Accounting-Request with long attributes (about
// 1.3 KB of JSON per record, so that a full disk cannot take it in the
// slack of a page).
func acctRequest(t *testing.T, status rfc2866.AcctStatusType, session string) []byte {
	t.Helper()
	p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(p, status)
	rfc2866.AcctSessionID_SetString(p, session)
	long := strings.Repeat("x", 240)
	rfc2865.UserName_SetString(p, "alice-"+long)
	rfc2865.CallingStationID_SetString(p, long)
	rfc2865.CalledStationID_SetString(p, long)
	rfc2865.NASIdentifier_SetString(p, long)
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAccountingDiskFull: over real UDP, with the accounting file on a
// small tmpfs. While the disk is full a request gets no answer (and is
// counted accounting_write_failed); after space returns the NAS's
// retransmission of the same datagram is answered, and the file holds
// every acknowledged record, whole, and exactly one record for it.
func TestAccountingDiskFull(t *testing.T) {
	dir := policytest.SmallFS(t, 64<<10)
	file := filepath.Join(dir, "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	conn := dial(t, s.AcctAddr())
	acked := map[string]bool{}
	if rawExchange(t, conn, acctRequest(t, rfc2866.AcctStatusType_Value_Start, "before"), time.Second) == nil {
		t.Fatal("no answer before the disk is full")
	}
	acked["before"] = true

	filler := policytest.Fill(t, dir, "filler")
	// The file's last page may take a record or two; the disk is full at
	// the latest then.
	var lost []byte
	var lostID string
	for i := range 8 {
		id := fmt.Sprintf("full-%d", i)
		b := acctRequest(t, rfc2866.AcctStatusType_Value_Stop, id)
		if rawExchange(t, conn, b, 700*time.Millisecond) == nil {
			lost, lostID = b, id
			break
		}
		acked[id] = true
	}
	if lost == nil {
		t.Fatal("every request answered on a full disk")
	}
	if n := s.Stats().Drops[DropAccountingWriteFail]; n == 0 {
		t.Fatalf("accounting_write_failed = 0 after an unanswered request")
	}
	// Retransmitted while the disk is still full: still no answer.
	if rawExchange(t, conn, lost, 700*time.Millisecond) != nil {
		t.Fatal("answered a retransmission whose record could not be written")
	}
	for _, r := range readAcct(t, file) {
		if r.SessionID == lostID {
			t.Fatal("an unacknowledged record is in the file")
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if rawExchange(t, conn, lost, time.Second) == nil {
		t.Fatal("the retransmission after space returned got no answer")
	}
	acked[lostID] = true
	// Once more: answered from the reply cache, not recorded twice.
	if rawExchange(t, conn, lost, time.Second) == nil {
		t.Fatal("second retransmission got no answer")
	}
	seen := map[string]int{}
	for _, r := range readAcct(t, file) { // fails on a line that does not parse
		seen[r.SessionID]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("record %s: %d in the file, want 1 (file: %v)", id, seen[id], seen)
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("records %v, acknowledged %v", seen, acked)
	}
}

// TestAccountingCrash kills (SIGKILL) a process appending accounting
// records at an arbitrary moment: every record it acknowledged is in the
// file and every line parses; a file left ending in a partial line (a
// crash during a write) is repaired on open and new records are whole.
func TestAccountingCrash(t *testing.T) {
	if os.Getenv("GATEHOUSE_ACCT_CRASH_HELPER") != "" {
		return
	}
	for _, partial := range []bool{false, true} {
		t.Run(fmt.Sprintf("partial=%v", partial), func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "accounting.jsonl")
			cmd := exec.Command(os.Args[0], "-test.run=^TestAccountingCrashHelper$")
			cmd.Env = append(os.Environ(), "GATEHOUSE_ACCT_CRASH_HELPER="+file)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			last := -1
			for sc.Scan() && last < 200 {
				if n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "acked ")); err == nil {
					last = n
				}
			}
			cmd.Process.Signal(syscall.SIGKILL)
			cmd.Wait()
			if last < 0 {
				t.Fatal("the helper acknowledged nothing")
			}
			if partial {
				f, _ := os.OpenFile(file, os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(`{"time":"2026-12-01T00:00:00Z","status":"sto`)
				f.Close()
			}
			a, err := openAcctLog(file, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.write(&AcctRecord{Status: "start", SessionID: "after-restart"}); err != nil {
				t.Fatal(err)
			}
			a.close()
			recs := readAcct(t, file) // fails on a line that does not parse
			have := map[string]bool{}
			for _, r := range recs {
				have[r.SessionID] = true
			}
			for i := 0; i <= last; i++ {
				if !have[strconv.Itoa(i)] {
					t.Fatalf("acknowledged record %d lost (%d records)", i, len(recs))
				}
			}
			if recs[len(recs)-1].SessionID != "after-restart" {
				t.Fatalf("last record %+v", recs[len(recs)-1])
			}
		})
	}
}

// TestAccountingCrashHelper is the process TestAccountingCrash kills: it
// appends records and prints "acked N" once record N is durable.
func TestAccountingCrashHelper(t *testing.T) {
	file := os.Getenv("GATEHOUSE_ACCT_CRASH_HELPER")
	if file == "" {
		t.Skip("helper process for TestAccountingCrash")
	}
	a, err := openAcctLog(file, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		if err := a.write(&AcctRecord{Status: "interim", SessionID: strconv.Itoa(i), NAS: "lo", NASAddr: "127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "acked %d\n", i)
		w.Flush()
	}
}

// BenchmarkAccountingUDP: Interim-Updates over UDP from 16 concurrent
// senders, each waiting for its Accounting-Response, with the file on the
// test's temporary directory; every reply waits for its record's fsync
// (group commit).
func BenchmarkAccountingUDP(b *testing.B) {
	for _, st := range []rfc2866.AcctStatusType{rfc2866.AcctStatusType_Value_InterimUpdate, rfc2866.AcctStatusType_Value_Stop} {
		b.Run(st.String(), func(b *testing.B) { benchAccounting(b, st, 8) })
	}
	// One sender at a time: the latency of one acknowledged record.
	b.Run("Interim-Update/serial", func(b *testing.B) {
		benchAccounting(b, rfc2866.AcctStatusType_Value_InterimUpdate, 0)
	})
}

// benchAccounting sends from par×GOMAXPROCS goroutines (par 0: one).
func benchAccounting(b *testing.B, status rfc2866.AcctStatusType, par int) {
	file := filepath.Join(b.TempDir(), "accounting.jsonl")
	s := startServer(b, func(c *Config) { c.AccountingFile = file })
	var seq atomic.Uint32
	req := func(id byte) []byte {
		p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
		p.Identifier = id
		rfc2866.AcctStatusType_Set(p, status)
		rfc2866.AcctSessionID_SetString(p, "bench")
		// A new record each time (a NAS never sends one twice but as a
		// retransmission, which would not be recorded again).
		rfc2866.AcctSessionTime_Set(p, rfc2866.AcctSessionTime(seq.Add(1)))
		rfc2865.UserName_SetString(p, "alice@corp.example.com")
		enc, _ := p.Encode()
		return enc
	}
	send := func(pb interface{ Next() bool }) {
		c, err := net.Dial("udp", s.AcctAddr().String())
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		var id byte
		for pb.Next() {
			id++
			if _, err := c.Write(req(id)); err != nil {
				b.Error(err)
				return
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	}
	b.ResetTimer()
	if par == 0 {
		send(&serialPB{n: b.N})
		return
	}
	b.SetParallelism(par) // 16 senders on 2 cores
	b.RunParallel(func(pb *testing.PB) { send(pb) })
}

type serialPB struct{ n int }

func (p *serialPB) Next() bool { p.n--; return p.n >= 0 }

// TestAccountingRetransmitAfterCacheExpiry: a NAS whose Accounting-Response
// was lost retransmits after the reply cache forgot the request: it is
// answered and not recorded twice, even with a new Identifier (the same
// record: acctdedup.go). A record with new content is a new record.
func TestAccountingRetransmitAfterCacheExpiry(t *testing.T) {
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	conn := dial(t, s.AcctAddr())
	b := acctRequest(t, rfc2866.AcctStatusType_Value_Stop, "lost-reply")
	if rawExchange(t, conn, b, time.Second) == nil {
		t.Fatal("no answer")
	}
	s.cache.expire(time.Now().Add(cacheTTL + time.Second))
	if s.cache.len() != 0 {
		t.Fatal("reply cache not expired")
	}
	if rawExchange(t, conn, b, time.Second) == nil {
		t.Fatal("no answer to the late retransmission")
	}
	if n := len(readAcct(t, file)); n != 1 {
		t.Fatalf("%d records after a late retransmission, want 1", n)
	}
	p, _ := layeh.Parse(b, []byte(testSecret))
	p.Identifier++
	b2, _ := p.Encode()
	if rawExchange(t, conn, b2, time.Second) == nil {
		t.Fatal("no answer to the record with a new Identifier")
	}
	if n := len(readAcct(t, file)); n != 1 {
		t.Fatalf("%d records, want 1 (a new Identifier, the same record)", n)
	}
	rfc2866.AcctSessionTime_Set(p, 60)
	b3, _ := p.Encode()
	if rawExchange(t, conn, b3, time.Second) == nil {
		t.Fatal("no answer to a new record")
	}
	if n := len(readAcct(t, file)); n != 2 {
		t.Fatalf("%d records, want 2 (new content is a new record)", n)
	}
}
