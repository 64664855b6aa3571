package radius

import (
	"path/filepath"
	"testing"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2866"
)

// TestProxyStateDurableAccounting: with an accounting file (the default
// of gatehouse serve) the Accounting-Response, sent by the committer once
// the record is durable, echoes the Proxy-States too — over UDP (with its
// Message-Authenticator) and over RadSec (without, acctreply.go).
func TestProxyStateDurableAccounting(t *testing.T) {
	file := filepath.Join(t.TempDir(), "accounting.jsonl")
	s := startRadSec(t, func(c *Config) { c.AccountingFile = file })
	ac := layeh.New(layeh.CodeAccountingRequest, []byte(testSecret))
	rfc2866.AcctStatusType_Set(ac, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(ac, "ps-udp")
	req := withProxyState(t, ac)
	conn := dial(t, s.AcctAddr())
	if p := checkProxyState(t, "Accounting-Response (UDP)", req, rawExchange(t, conn, req, 2*time.Second)); p.Code != layeh.CodeAccountingResponse {
		t.Fatalf("code %v", p.Code)
	}

	rc := s.mustDial(t, &s.rs.ap)
	ac = layeh.New(layeh.CodeAccountingRequest, radsecKey)
	rfc2866.AcctStatusType_Set(ac, rfc2866.AcctStatusType_Value_Start)
	rfc2866.AcctSessionID_SetString(ac, "ps-radsec")
	req = withProxyState(t, ac)
	rp := checkReply(t, req, rc.exchange(req))
	var got [][]byte
	for _, a := range rp.Attributes {
		if a.Type == rfc2865.ProxyState_Type {
			got = append(got, a.Attribute)
		}
	}
	if rp.Code != layeh.CodeAccountingResponse || len(got) != len(proxyStates) {
		t.Fatalf("code %v, Proxy-State %q", rp.Code, got)
	}
	if recs := readAcct(t, file); len(recs) != 2 || recs[1].NAS != "aps" {
		t.Errorf("records %+v", recs)
	}
}
