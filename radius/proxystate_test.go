package radius

import (
	"bytes"
	"crypto/tls"
	"net"
	"regexp"
	"strings"
	"testing"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"

	"github.com/gatehouse/gatehouse/radius/eap"
	"github.com/gatehouse/gatehouse/radius/radbench"
)

// proxyStates are the Proxy-State values a chain of two proxies added.
var proxyStates = [][]byte{[]byte("proxy-one\x00\x01"), []byte("proxy-two: 2nd hop")}

// withProxyState re-encodes a request with the test Proxy-States appended
// (after its other attributes, as proxies add them).
func withProxyState(tb testing.TB, req *layeh.Packet) []byte {
	tb.Helper()
	for _, v := range proxyStates {
		rfc2865.ProxyState_Add(req, v)
	}
	var b []byte
	var err error
	if req.Code == layeh.CodeAccountingRequest {
		b, err = req.Encode()
	} else {
		b, err = radbench.EncodeRequest(req)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// checkProxyState verifies that reply answers req (Response Authenticator
// and Message-Authenticator) and echoes the Proxy-States in order.
func checkProxyState(t *testing.T, what string, req, reply []byte) *layeh.Packet {
	t.Helper()
	if reply == nil {
		t.Fatalf("%s: no reply", what)
	}
	if !layeh.IsAuthenticResponse(reply, req, []byte(testSecret)) {
		t.Fatalf("%s: Response Authenticator wrong", what)
	}
	reqAuth := req[4:20]
	if req[0] == byte(layeh.CodeAccountingRequest) {
		reqAuth = nil
	}
	if err := radbench.CheckReplyMA(reply, reqAuth, []byte(testSecret)); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	p, err := layeh.Parse(reply, []byte(testSecret))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	var got [][]byte
	for _, a := range p.Attributes {
		if a.Type == rfc2865.ProxyState_Type {
			got = append(got, a.Attribute)
		}
	}
	if len(got) != len(proxyStates) {
		t.Fatalf("%s: %d Proxy-State attributes, want %d", what, len(got), len(proxyStates))
	}
	for i := range got {
		if !bytes.Equal(got[i], proxyStates[i]) {
			t.Errorf("%s: Proxy-State[%d] = %q, want %q", what, i, got[i], proxyStates[i])
		}
	}
	return p
}

// TestProxyStateEchoed: RFC 2865 section 5.33 — every reply (Challenge,
// Accept, Reject, Accounting-Response, both Status-Server answers) carries
// the request's Proxy-State attributes, unmodified and in order.
func TestProxyStateEchoed(t *testing.T) {
	ip := newInproc(t, nil)

	// Status-Server on the authentication port: Access-Accept.
	st := layeh.New(layeh.CodeStatusServer, []byte(testSecret))
	req := withProxyState(t, st)
	if p := checkProxyState(t, "Status-Server (auth)", req, ip.do(req)); p.Code != layeh.CodeAccessAccept {
		t.Errorf("Status-Server answered %v", p.Code)
	}

	// Reject: an Access-Request without EAP.
	rj := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
	rfc2865.UserName_SetString(rj, "nobody")
	req = withProxyState(t, rj)
	if p := checkProxyState(t, "Access-Reject", req, ip.do(req)); p.Code != layeh.CodeAccessReject {
		t.Errorf("request without EAP answered %v", p.Code)
	}

	// A whole EAP-TLS login: every Challenge and the Accept.
	p := getPKI(t)
	peer := &eap.Peer{Identity: "alice", TLS: p.clientTLS(&p.alice, tls.VersionTLS13)}
	defer peer.Close()
	msg, state := peer.Identify(0), []byte(nil)
	challenges := 0
	for id := byte(0); ; id++ {
		r := layeh.New(layeh.CodeAccessRequest, []byte(testSecret))
		r.Identifier = id
		radbench.AddEAP(r, msg, state)
		req := withProxyState(t, r)
		rp := checkProxyState(t, "EAP round", req, ip.do(req))
		if rp.Code == layeh.CodeAccessAccept {
			break
		}
		if rp.Code != layeh.CodeAccessChallenge {
			t.Fatalf("login answered %v", rp.Code)
		}
		challenges++
		state = rfc2865.State_Get(rp)
		var done bool
		var err error
		if msg, done, err = peer.Handle(eapOf(rp)); err != nil || done {
			t.Fatalf("peer: done=%v %v", done, err)
		}
	}
	if challenges < 2 {
		t.Errorf("only %d challenges", challenges)
	}

	// The accounting port: Accounting-Response to Accounting-Request and
	// to Status-Server.
	ip.j.acct = true
	ac := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(ac, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(ac, "ps-1")
	req = withProxyState(t, ac)
	if p := checkProxyState(t, "Accounting-Response", req, ip.do(req)); p.Code != layeh.CodeAccountingResponse {
		t.Errorf("Accounting-Request answered %v", p.Code)
	}
	st = layeh.New(layeh.CodeStatusServer, []byte(testSecret))
	req = withProxyState(t, st)
	if p := checkProxyState(t, "Status-Server (acct)", req, ip.do(req)); p.Code != layeh.CodeAccountingResponse {
		t.Errorf("Status-Server on the accounting port answered %v", p.Code)
	}
}

// TestProxyStateNone: no Proxy-State in, none out.
func TestProxyStateNone(t *testing.T) {
	ip := newInproc(t, nil)
	st := layeh.New(layeh.CodeStatusServer, []byte(testSecret))
	req, _ := radbench.EncodeRequest(st)
	reply := ip.do(req)
	p, err := layeh.Parse(reply, []byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rfc2865.ProxyState_Lookup(p); err == nil {
		t.Error("Proxy-State invented")
	}
}

// TestRadclientProxyState: FreeRADIUS's radclient sees its Proxy-States in
// the Access-Accept to Status-Server and in the Accounting-Response.
func TestRadclientProxyState(t *testing.T) {
	requireTool(t, "radclient")
	s := startServer(t, nil)
	ps := "Proxy-State = 0x6f6e65\nProxy-State = 0x74776f\n"
	re := regexp.MustCompile(`Proxy-State = 0x([0-9a-f]+)`)
	for _, c := range []struct {
		name, cmd, attrs, want string
		addr                   net.Addr
	}{
		{"status", "status", "Message-Authenticator = 0x00\n" + ps, "Received Access-Accept", s.Addr()},
		{"acct", "acct", "Acct-Status-Type = Start\nAcct-Session-Id = \"ps\"\n" + ps, "Received Accounting-Response", s.AcctAddr()},
		{"reject", "auth", "User-Name = \"x\"\nMessage-Authenticator = 0x00\n" + ps, "Received Access-Reject", s.Addr()},
	} {
		out, err := radclient(t, c.addr, c.cmd, c.attrs)
		if err != nil && c.name != "reject" || !strings.Contains(out, c.want) {
			t.Errorf("%s: %v\n%s", c.name, err, out)
			continue
		}
		i := strings.Index(out, c.want)
		got := re.FindAllStringSubmatch(out[i:], -1)
		if len(got) != 2 || got[0][1] != "6f6e65" || got[1][1] != "74776f" {
			t.Errorf("%s: Proxy-State in reply %v\n%s", c.name, got, out)
		}
	}
}
