package radius

import (
	"crypto/x509"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/policy"
)

func TestDynTarget(t *testing.T) {
	tbl := newNASTable([]client{
		{name: "aps", prefix: netip.MustParsePrefix("10.1.0.0/16"), secret: []byte("a"), dyn: clientDyn{port: 3799, nasIP: true}},
		{name: "other", prefix: netip.MustParsePrefix("10.2.0.0/16"), secret: []byte("b"), dyn: clientDyn{port: 3799, nasIP: true}},
		{name: "off", prefix: netip.MustParsePrefix("10.3.0.0/16"), secret: []byte("c")},
	})
	aps, off := tbl.lookup(netip.MustParseAddr("10.1.0.1")), tbl.lookup(netip.MustParseAddr("10.3.0.1"))
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name  string
		info  sessionInfo
		want  string
		valid bool
	}{
		{"source", sessionInfo{nas: aps, nasAddr: a("10.1.2.3")}, "10.1.2.3:3799", true},
		{"nas-ip inside", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("10.1.9.9")}, "10.1.9.9:3799", true},
		{"nas-ip of another client ignored", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("10.2.0.1")}, "10.1.2.3:3799", true},
		{"nas-ip outside ignored", sessionInfo{nas: aps, nasAddr: a("10.1.2.3"), nasIP: a("192.0.2.1")}, "10.1.2.3:3799", true},
		{"mapped source", sessionInfo{nas: aps, nasAddr: a("::ffff:10.1.2.3")}, "10.1.2.3:3799", true},
		{"no coa port", sessionInfo{nas: off, nasAddr: a("10.3.0.1")}, "", false},
	} {
		got, ok := dynTarget(tbl, &tc.info)
		if ok != tc.valid || (ok && got.String() != tc.want) {
			t.Errorf("%s: %v %v, want %v %v", tc.name, got, ok, tc.want, tc.valid)
		}
	}
}

// acctPacket builds a parsed Accounting-Request for table tests.
func acctPacket(t testing.TB, status uint32, session, user, station string, class ...string) packet {
	p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType(status))
	if session != "" {
		rfc2866.AcctSessionID_SetString(p, session)
	}
	rfc2865.UserName_SetString(p, user)
	if station != "" {
		rfc2865.CallingStationID_SetString(p, station)
	}
	for _, c := range class {
		p.Add(rfc2865.Class_Type, []byte(c))
	}
	return parsed(t, p)
}

// parsed encodes p and parses it back as the server does.
func parsed(t testing.TB, p *layeh.Packet) packet {
	t.Helper()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := parsePacket(b)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func TestLiveTable(t *testing.T) {
	n := &nas{name: "ap", prefix: netip.MustParsePrefix("127.0.0.0/8"), dyn: clientDyn{port: 3799}}
	src := netip.MustParseAddr("127.0.0.1")
	t0 := time.Unix(1_700_000_000, 0)
	d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
	accept := func(tb *liveTable, station string, at time.Time) string {
		req := acctPacket(t, 1, "", "anon", station) // any packet with User-Name and Calling-Station-Id
		cls, _, ok := tb.accept(n, src, req, "alice", d, at)
		if !ok {
			t.Fatal("accept")
		}
		return cls
	}
	count := func(tb *liveTable) [2]int { p, l := tb.len(); return [2]int{p, l} }

	tb := newLiveTable(2)
	c1 := accept(tb, "s1", t0)
	accept(tb, "s2", t0.Add(time.Second))
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0.Add(2*time.Second))
	accept(tb, "s3", t0.Add(3*time.Second)) // full: evicts the pending s2, not the live s1
	if got := count(tb); got != [2]int{1, 1} {
		t.Fatalf("after eviction %v", got)
	}
	tb.expire(t0.Add(3*time.Second + pendingTTL)) // s3 pending too long; s1 live without interim: kept
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("after pending expiry %v", got)
	}
	// Interim updates every 5 minutes: stale after 10 without one.
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1"), t0.Add(5*time.Minute))
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1"), t0.Add(10*time.Minute))
	tb.expire(t0.Add(19 * time.Minute))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("expired too early %v", got)
	}
	tb.expire(t0.Add(21 * time.Minute))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("stale session kept %v", got)
	}

	// No interim at all: defaultMaxAge.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0)
	tb.expire(t0.Add(defaultMaxAge - time.Minute))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("%v", got)
	}
	tb.expire(t0.Add(defaultMaxAge + time.Minute))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("%v", got)
	}

	// How accounting is linked: Class token, then Acct-Session-Id, then station and user.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	accept(tb, "s2", t0)
	for _, tc := range []struct {
		p    packet
		want string
	}{
		{acctPacket(t, 1, "A", "alice", "s1", c1), "class"},
		{acctPacket(t, 3, "A", "alice", "other"), "session"},
		{acctPacket(t, 1, "B", "bob", "s2"), ""},
		{acctPacket(t, 1, "B", "alice", "s2"), "station"},
		{acctPacket(t, 1, "C", "alice", "s9"), ""},
	} {
		if got := tb.account(n, src, tc.p, t0); got != tc.want {
			t.Errorf("linked by %q, want %q", got, tc.want)
		}
	}

	// Re-authentication: the new accept takes over the Acct-Session-Id.
	tb = newLiveTable(10)
	c1 = accept(tb, "s1", t0)
	tb.account(n, src, acctPacket(t, 1, "A", "alice", "s1", c1), t0)
	c2 := accept(tb, "s1", t0.Add(time.Hour))
	tb.account(n, src, acctPacket(t, 3, "A", "alice", "s1", c2), t0.Add(time.Hour))
	if got := count(tb); got != [2]int{0, 1} {
		t.Fatalf("after re-authentication %v", got)
	}
	// Accounting-On from the NAS: every session of it is gone.
	accept(tb, "s9", t0.Add(time.Hour))
	tb.account(n, src, acctPacket(t, 7, "", "", ""), t0.Add(time.Hour))
	if got := count(tb); got != [2]int{0, 0} {
		t.Fatalf("after Accounting-On %v", got)
	}
	if len(tb.bySession)+len(tb.byStation)+len(tb.byToken) != 0 {
		t.Errorf("index entries left: %d %d %d", len(tb.bySession), len(tb.byStation), len(tb.byToken))
	}
}

func TestDynAuthConfig(t *testing.T) {
	port := func(p int) *int { return &p }
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string
		port uint16
	}{
		{"defaults", func(*Config) {}, "", 3799},
		{"port", func(c *Config) { c.Clients[0].CoAPort = port(1700) }, "", 1700},
		{"off", func(c *Config) { c.Clients[0].CoAPort = port(0) }, "", 0},
		{"negative off", func(c *Config) { c.Clients[0].CoAPort = port(-1) }, "", 0},
		{"port too big", func(c *Config) { c.Clients[0].CoAPort = port(70000) }, "coa_port", 0},
		{"revalidate too often", func(c *Config) { c.RevalidateEvery = policy.Duration{Duration: time.Millisecond} }, "revalidate_every", 0},
		{"bad timeout", func(c *Config) { c.DynAuthTimeout = policy.Duration{Duration: -time.Second} }, "dynauth_timeout", 0},
		{"many retries", func(c *Config) { c.DynAuthRetries = 11 }, "dynauth_retries", 0},
		{"bad max", func(c *Config) { c.MaxWiFiSessions = -1 }, "max_wifi_sessions", 0},
	} {
		c := Config{Clients: []ClientConfig{{Name: "ap", Network: "10.0.0.0/8", Secret: "s"}}}
		tc.mod(&c)
		s, err := c.settings()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if s.clients[0].dyn.port != tc.port {
			t.Errorf("%s: port %d", tc.name, s.clients[0].dyn.port)
		}
		if tc.name == "defaults" && (s.dyn.revalidateEvery != time.Minute || s.dyn.timeout != 2*time.Second || s.dyn.retries != 2 || s.dyn.maxSessions != 65536) {
			t.Errorf("defaults %+v", s.dyn)
		}
	}
}

// TestDynRequestVector checks the encoding against layeh's independent
// parser and authenticator check.
func TestDynRequestVector(t *testing.T) {
	info := &sessionInfo{nasIP: netip.MustParseAddr("192.0.2.1"), nasID: "ap-1", userName: "alice", sessionID: "S1", station: "aa-bb"}
	wf := &policy.WiFi{VLAN: "20", FilterID: "f", Class: "dropped"}
	b, err := buildDynRequest(dynCoA, 9, info, wf, []byte(testSecret), time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if !layeh.IsAuthenticRequest(b, []byte(testSecret)) {
		t.Fatal("layeh: bad Request Authenticator")
	}
	if err := (&fakeNAS{secret: []byte(testSecret)}).check(b); err != nil {
		t.Fatal(err)
	}
	p, err := layeh.Parse(b, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if p.Code != layeh.CodeCoARequest || p.Identifier != 9 || rfc2865.UserName_GetString(p) != "alice" ||
		rfc2865.FilterID_GetString(p) != "f" || len(classes(p)) != 0 || binary.BigEndian.Uint32(p.Get(55)) != 1_700_000_000 {
		t.Errorf("packet %+v", p)
	}
	// Answers: a good ACK passes; a flipped bit, a wrong code or a wrong
	// Identifier does not.
	nas := &fakeNAS{secret: []byte(testSecret)}
	ack := nas.answer(b, codeCoAACK, 0)
	if code, _, err := checkDynReply(ack, b, []byte(testSecret)); err != nil || code != codeCoAACK {
		t.Fatalf("ACK: %v %v", code, err)
	}
	nak := nas.answer(b, codeCoANAK, 503)
	if code, cause, err := checkDynReply(nak, b, []byte(testSecret)); err != nil || code != codeCoANAK || cause != 503 {
		t.Fatalf("NAK: %v %v %v", code, cause, err)
	}
	for i := range ack {
		bad := append([]byte(nil), ack...)
		bad[i] ^= 0x10
		if _, _, err := checkDynReply(bad, b, []byte(testSecret)); err == nil {
			t.Errorf("flipped byte %d accepted", i)
		}
	}
	if _, _, err := checkDynReply(nas.answer(b, codeDisconnectACK, 0), b, []byte(testSecret)); err == nil {
		t.Error("Disconnect-ACK accepted for a CoA-Request")
	}
	if _, _, err := checkDynReply(ack, b, []byte("other")); err == nil {
		t.Error("wrong secret accepted")
	}
}

// FuzzDynReply: any answer is checked without panic, and only authentic
// ones pass.
func FuzzDynReply(f *testing.F) {
	info := &sessionInfo{userName: "alice", sessionID: "S1"}
	req, err := buildDynRequest(dynDisconnect, 1, info, nil, []byte(testSecret), time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	nas := &fakeNAS{secret: []byte(testSecret)}
	f.Add(nas.answer(req, codeDisconnectACK, 0))
	f.Add(nas.answer(req, codeDisconnectNAK, 503))
	f.Add([]byte{41, 1, 0, 20})
	f.Fuzz(func(t *testing.T, b []byte) {
		code, _, err := checkDynReply(b, req, []byte(testSecret))
		if err == nil && code != codeDisconnectACK && code != codeDisconnectNAK {
			t.Fatalf("accepted code %d", code)
		}
	})
}

// FuzzAccountingTrack: any Accounting-Request's attributes are linked to
// sessions without panic, and the table's indexes stay consistent.
func FuzzAccountingTrack(f *testing.F) {
	n := &nas{name: "ap", dyn: clientDyn{port: 3799}}
	src := netip.MustParseAddr("127.0.0.1")
	d := &policy.Decision{Allowed: true, Chain: []*x509.Certificate{{}}}
	f.Add([]byte{40, 6, 0, 0, 0, 1, 31, 4, 's', '1'}, uint8(0))
	f.Add([]byte{40, 6, 0, 0, 0, 2, 25, 4, 'g', 'h'}, uint8(1))
	f.Add([]byte{40, 6, 0, 0, 0, 7}, uint8(2))
	f.Fuzz(func(t *testing.T, attrs []byte, which uint8) {
		if len(attrs) > maxPacket-headerLen-classLen-2 {
			return
		}
		tb := newLiveTable(4)
		var tokens []string
		for _, st := range []string{"s1", "s2"} {
			cls, _, _ := tb.accept(n, src, acctPacket(t, 1, "", "u", st), "u", d, time.Unix(0, 0))
			tokens = append(tokens, cls)
		}
		b := make([]byte, headerLen, headerLen+len(attrs)+classLen+2)
		b[0] = codeAccountingRequest
		b = append(b, attrs...)
		if which%2 == 1 {
			b = append(b, attrClass, byte(2+classLen))
			b = append(b, tokens[int(which/2)%2]...)
		}
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		p, err := parsePacket(b)
		if err != nil {
			return
		}
		for i := range 3 {
			tb.account(n, src, p, time.Unix(int64(i), 0))
		}
		tb.expire(time.Unix(1e6, 0))
		for _, idx := range []map[sessionKey]*liveSession{tb.bySession, tb.byStation} {
			for k, e := range idx {
				if tb.byToken[e.token] != e {
					t.Fatalf("index %v points at a removed session", k)
				}
			}
		}
		pend, live := tb.len()
		if pend+live != len(tb.byToken) || len(tb.bySession) > len(tb.byToken) || len(tb.byStation) > len(tb.byToken) {
			t.Fatalf("inconsistent: %d+%d entries, %d tokens, %d sessions, %d stations", pend, live, len(tb.byToken), len(tb.bySession), len(tb.byStation))
		}
	})
}

// TestAccountingOnEndsOneNAS: one [[radius.client]] network covers many
// access points; an Accounting-On/Off ends the sessions of the access
// point that sent it (by NAS-IP-Address, else NAS-Identifier, else source
// address), not those of every access point of the client.
func TestAccountingOnEndsOneNAS(t *testing.T) {
	n := &nas{name: "aps", prefix: netip.MustParsePrefix("127.0.0.0/8")}
	t0 := time.Unix(1_700_000_000, 0)
	d := &policy.Decision{Allowed: true, Rule: "r", Chain: []*x509.Certificate{{}}}
	pkt := func(status uint32, nasIP, nasID, station string) packet {
		p := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
		rfc2866.AcctStatusType_Set(p, rfc2866.AcctStatusType(status))
		rfc2865.UserName_SetString(p, "alice")
		if station != "" {
			rfc2865.CallingStationID_SetString(p, station)
		}
		if nasIP != "" {
			rfc2865.NASIPAddress_Set(p, net.ParseIP(nasIP))
		}
		if nasID != "" {
			rfc2865.NASIdentifier_SetString(p, nasID)
		}
		return parsed(t, p)
	}
	a := netip.MustParseAddr
	for _, c := range []struct {
		name         string
		src          string // source of the Accounting-On
		nasIP, nasID string
		wantLeft     []string // stations still live
	}{
		{"by source address", "127.0.0.1", "", "", []string{"s2", "s3", "s4"}},
		{"by NAS-IP-Address", "127.0.0.9", "192.0.2.3", "", []string{"s1", "s2", "s4"}},
		{"by NAS-Identifier", "127.0.0.9", "", "ap-4", []string{"s1", "s2", "s3"}},
		{"unknown access point", "127.0.0.9", "192.0.2.99", "ap-99", []string{"s1", "s2", "s3", "s4"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tb := newLiveTable(10)
			for _, ap := range []struct{ src, nasIP, nasID, station string }{
				{"127.0.0.1", "", "", "s1"},
				{"127.0.0.2", "", "", "s2"},
				{"127.0.0.3", "192.0.2.3", "", "s3"},
				{"127.0.0.4", "", "ap-4", "s4"},
			} {
				if _, _, ok := tb.accept(n, a(ap.src), pkt(1, ap.nasIP, ap.nasID, ap.station), "alice", d, t0); !ok {
					t.Fatal("accept")
				}
			}
			tb.account(n, a(c.src), pkt(7, c.nasIP, c.nasID, ""), t0)
			var left []string
			for _, e := range tb.byToken {
				left = append(left, e.info.station)
			}
			slices.Sort(left)
			if !slices.Equal(left, c.wantLeft) {
				t.Errorf("live after Accounting-On: %v, want %v", left, c.wantLeft)
			}
		})
	}
}
