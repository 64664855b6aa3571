package audit

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// tricky strings: everything encoding/json escapes or replaces.
var tricky = []string{"", "plain", `q"uote\back`, "<b>&amp;</b>", "tab\tnl\ncr\r\b\f\x00\x01\x1f\x7f",
	"ünïcødé ✓ 🎉", "bad\xffutf8\xc3", "sep\u2028par\u2029", "CN=Alice Example,OU=People,DC=example,DC=com"}

func randomLine(r *rand.Rand) line {
	s := func() string {
		if r.IntN(3) == 0 {
			return ""
		}
		return tricky[r.IntN(len(tricky))] + tricky[r.IntN(len(tricky))]
	}
	list := func() []string {
		var l []string
		for range r.IntN(3) {
			l = append(l, s())
		}
		return l
	}
	durations := []float64{0, 0.001, 0.123, 1, 12.5, 1234.567, 99999.999}
	return line{
		Time: time.Unix(r.Int64N(4e9), r.Int64N(1e9)).UTC(), Door: s(), Event: s(), NAS: s(), NASAddr: s(), Client: s(), Peer: s(),
		Outcome: s(), Code: s(), Rule: s(), Reason: s(), Kind: s(), Name: s(), Field: s(), UPN: list(), Email: list(),
		CN: s(), Serial: s(), Fingerprint: s(), CertSerial: s(), Subject: s(), Issuer: s(), DN: s(), Groups: list(),
		TLSVersion: s(), Resumed: r.IntN(2) == 0, DurationMS: durations[r.IntN(len(durations))],
	}
}

// TestAppendLineMatchesMarshal: the hand encoder writes exactly what
// json.Marshal writes, so the audit trail's format does not change.
func TestAppendLineMatchesMarshal(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 5000; i++ {
		l := randomLine(r)
		want, err := json.Marshal(&l)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendLine(nil, &l)
		if err != nil || string(got) != string(want) {
			t.Fatalf("line %d:\ngot  %s\nwant %s (%v)", i, got, want, err)
		}
	}
}

func FuzzAppendLine(f *testing.F) {
	for _, s := range tricky {
		f.Add(s, s, 1.5)
	}
	f.Fuzz(func(t *testing.T, a, b string, ms float64) {
		l := line{Time: time.Unix(0, 0).UTC(), Door: a, Reason: b, Groups: []string{a, b}, UPN: []string{b}, DurationMS: ms}
		want, err := json.Marshal(&l)
		got, err2 := appendLine(nil, &l)
		if (err != nil) != (err2 != nil) || err == nil && string(got) != string(want) {
			t.Fatalf("got %s (%v)\nwant %s (%v)", got, err2, want, err)
		}
	})
}

// BenchmarkAppendLine is the encoding of one audit line, with
// json.Marshal (what it replaces) for comparison.
func BenchmarkAppendLine(b *testing.B) {
	l := line{Time: time.Now().UTC(), Door: "wifi", Event: "authenticate", NAS: "ap-1", NASAddr: "10.0.0.2", Client: "02-00-00-00-00-01",
		Outcome: "allow", Code: "allowed", Rule: "engineering", Reason: "rule engineering allows access", Kind: "user", Name: "alice@example.com",
		Field: "upn", UPN: []string{"alice@example.com"}, CN: "Alice Example", Fingerprint: "4f1c0e…", CertSerial: "7ab32e5d4d5fad48428cec3c8f18cdda",
		Subject: "CN=Alice Example,OU=People,O=gatehouse test", Issuer: "CN=Gatehouse Test Employee Issuing CA,O=gatehouse test",
		DN: "CN=Alice Example,OU=People,DC=example,DC=com", Groups: []string{"CN=Engineering,OU=Groups,DC=example,DC=com"},
		TLSVersion: "1.3", Resumed: true, DurationMS: 1.234}
	b.Run("appendLine", func(b *testing.B) {
		buf := make([]byte, 0, 2048)
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = appendLine(buf[:0], &l)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			json.Marshal(&l)
		}
	})
}
