package radius

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
	"layeh.com/radius/rfc2869"
)

func readAcct(t *testing.T, path string) []AcctRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []AcctRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r AcctRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestAccounting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	conn := dial(t, s.AcctAddr())
	send := func(status rfc2866.AcctStatusType, secret string) []byte {
		p := layeh.New(layeh.CodeAccountingRequest, []byte(secret))
		rfc2866.AcctStatusType_Set(p, status)
		rfc2866.AcctSessionID_SetString(p, "sess-1")
		rfc2865.UserName_SetString(p, "alice")
		rfc2865.NASIPAddress_Set(p, net.IPv4(192, 0, 2, 1))
		rfc2865.FramedIPAddress_Set(p, net.IPv4(10, 10, 0, 7))
		rfc2866.AcctInputOctets_Set(p, 1000)
		rfc2866.AcctOutputOctets_Set(p, 2000)
		rfc2869.AcctInputGigawords_Set(p, 1)
		b, err := p.Encode()
		if err != nil {
			t.Fatal(err)
		}
		r := rawExchange(t, conn, b, 500*time.Millisecond)
		if r != nil && (r[0] != codeAccountingResponse || !layeh.IsAuthenticResponse(r, b, []byte(secret))) {
			t.Fatalf("bad Accounting-Response")
		}
		return r
	}
	for _, st := range []rfc2866.AcctStatusType{rfc2866.AcctStatusType_Value_Start, rfc2866.AcctStatusType_Value_InterimUpdate, rfc2866.AcctStatusType_Value_Stop} {
		if send(st, testSecret) == nil {
			t.Fatalf("no answer to status %v", st)
		}
	}
	if send(rfc2866.AcctStatusType_Value_Start, "wrong") != nil {
		t.Fatal("answered an Accounting-Request with a bad authenticator")
	}
	recs := readAcct(t, file)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	want := []string{"start", "interim", "stop"}
	for i, r := range recs {
		if r.Status != want[i] || r.SessionID != "sess-1" || r.UserName != "alice" || r.NAS != "lo" ||
			r.NASIP != "192.0.2.1" || r.FramedIP != "10.10.0.7" || r.InputOctets == nil || *r.InputOctets != 1<<32+1000 ||
			r.OutputOctets == nil || *r.OutputOctets != 2000 {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if st := s.Stats(); st.AccountingRecords != 3 || st.Drops[DropBadAuthenticator] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// radclient runs FreeRADIUS's radclient with attribute lines on stdin.
func radclient(t *testing.T, addr net.Addr, cmd, attrs string) (string, error) {
	bin := requireTool(t, "radclient")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, bin, "-x", "-r", "1", "-t", "2", addr.String(), cmd, testSecret)
	c.Stdin = strings.NewReader(attrs)
	out, err := c.CombinedOutput()
	return string(out), err
}

func TestRadclientInterop(t *testing.T) {
	requireTool(t, "radclient")
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	for _, a := range []net.Addr{s.Addr(), s.AcctAddr()} {
		out, err := radclient(t, a, "status", "Message-Authenticator = 0x00\n")
		want := "Received Access-Accept"
		if a == s.AcctAddr() {
			want = "Received Accounting-Response"
		}
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("status %v: %v\n%s", a, err, out)
		}
	}
	for _, st := range []string{"Start", "Interim-Update", "Stop"} {
		out, err := radclient(t, s.AcctAddr(), "acct", "Acct-Status-Type = "+st+"\nAcct-Session-Id = \"rc-1\"\nUser-Name = \"bob\"\nFramed-IP-Address = 10.20.0.9\nAcct-Input-Octets = 5\nAcct-Output-Octets = 6\nAcct-Session-Time = 60\n")
		if err != nil || !strings.Contains(out, "Received Accounting-Response") {
			t.Errorf("acct %s: %v\n%s", st, err, out)
		}
	}
	recs := readAcct(t, file)
	if len(recs) != 3 || recs[2].Status != "stop" || recs[2].FramedIP != "10.20.0.9" || recs[2].SessionTime == nil || *recs[2].SessionTime != 60 {
		t.Errorf("records %+v", recs)
	}
}

// TestAccountingReopen: after the file is renamed (log rotation) and
// ReopenAccounting is called, new records go to a fresh file at the path.
func TestAccountingReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "acct.jsonl")
	a, err := openAcctLog(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if err := a.write(&AcctRecord{Status: "start", SessionID: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	s := &Server{acct: a}
	if err := s.ReopenAccounting(); err != nil {
		t.Fatal(err)
	}
	if err := a.write(&AcctRecord{Status: "stop", SessionID: "1"}); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), `"start"`) || strings.Contains(string(old), `"stop"`) || !strings.Contains(string(cur), `"stop"`) {
		t.Fatalf("rotated %q, current %q", old, cur)
	}
}

// TestAccountingEventTime: a late record says when its event happened:
// Event-Timestamp and Acct-Delay-Time are in the record.
func TestAccountingEventTime(t *testing.T) {
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	rec := acctSpec{status: rfc2866.AcctStatusType_Value_Stop, session: "late", id: 9, nasID: "ap", event: 1764633600, delay: 600}
	if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
		t.Fatal("no answer")
	}
	rec = acctSpec{status: rfc2866.AcctStatusType_Value_Stop, session: "on-time", id: 10, nasID: "ap"}
	if acctFrom(t, "127.0.0.1:0", s.AcctAddr(), rec.encode(t, []byte(testSecret)), 5*time.Second) == nil {
		t.Fatal("no answer")
	}
	recs := readAcct(t, file)
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	if r := recs[0]; r.EventTime == nil || !r.EventTime.Equal(time.Unix(1764633600, 0)) || r.DelayTime == nil || *r.DelayTime != 600 {
		t.Errorf("late record: event %v, delay %v", r.EventTime, r.DelayTime)
	}
	if r := recs[1]; r.EventTime != nil || r.DelayTime != nil {
		t.Errorf("record without them: event %v, delay %v", r.EventTime, r.DelayTime)
	}
	b, _ := os.ReadFile(file)
	if strings.Count(string(b), "event_time") != 1 {
		t.Errorf("event_time written for a record without Event-Timestamp:\n%s", b)
	}
}

// TestRadclientAccountingDuplicate: FreeRADIUS's radclient, run twice
// (two processes: two source ports, their own Identifiers), sends the
// same Interim-Update, the second time with an Acct-Delay-Time: both are
// answered, one line is written. The next Interim-Update (new counters) is
// written.
func TestRadclientAccountingDuplicate(t *testing.T) {
	requireTool(t, "radclient")
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startServer(t, func(c *Config) { c.AccountingFile = file })
	rec := "Acct-Status-Type = Interim-Update\nAcct-Session-Id = \"rc-dup\"\nUser-Name = \"bob\"\nNAS-Identifier = \"ap-7\"\n" +
		"Event-Timestamp = 1764633600\nAcct-Session-Time = 600\nAcct-Input-Octets = 5000\n"
	for i, extra := range []string{"", "Acct-Delay-Time = 7\n", "Acct-Delay-Time = 0\n"} {
		attrs := rec + extra
		if i == 2 {
			attrs = strings.Replace(attrs, "Acct-Session-Time = 600", "Acct-Session-Time = 1200", 1)
		}
		out, err := radclient(t, s.AcctAddr(), "acct", attrs)
		if err != nil || !strings.Contains(out, "Received Accounting-Response") {
			t.Fatalf("radclient %d: %v\n%s", i, err, out)
		}
		want := []int{1, 1, 2}[i]
		if recs := readAcct(t, file); len(recs) != want {
			t.Fatalf("after radclient %d: %d records, want %d", i, len(recs), want)
		}
	}
	if d := s.Stats().AccountingDuplicates["lo"]; d != 1 {
		t.Errorf("duplicates %d, want 1", d)
	}
}
