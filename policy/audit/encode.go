package audit

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendLine appends l's JSON object to b: the bytes json.Marshal(l)
// would produce (field order, omitempty, HTML-safe string escaping), but
// without reflection or allocation. TestAppendLineMatchesMarshal and
// FuzzAppendLine hold it to that.
func appendLine(b []byte, l *line) ([]byte, error) {
	b = append(b, `{"time":"`...)
	b = l.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	b = appendField(b, "door", l.Door, false)
	b = appendField(b, "event", l.Event, false)
	b = appendField(b, "nas", l.NAS, true)
	b = appendField(b, "nas_addr", l.NASAddr, true)
	b = appendField(b, "client", l.Client, true)
	b = appendField(b, "peer", l.Peer, true)
	b = appendField(b, "outcome", l.Outcome, false)
	b = appendField(b, "code", l.Code, false)
	b = appendField(b, "rule", l.Rule, true)
	b = appendField(b, "reason", l.Reason, true)
	b = appendField(b, "kind", l.Kind, true)
	b = appendField(b, "name", l.Name, true)
	b = appendField(b, "field", l.Field, true)
	b = appendList(b, "upn", l.UPN)
	b = appendList(b, "email", l.Email)
	b = appendField(b, "cn", l.CN, true)
	b = appendField(b, "serial", l.Serial, true)
	b = appendField(b, "fingerprint", l.Fingerprint, true)
	b = appendField(b, "cert_serial", l.CertSerial, true)
	b = appendField(b, "subject", l.Subject, true)
	b = appendField(b, "issuer", l.Issuer, true)
	b = appendField(b, "dn", l.DN, true)
	b = appendList(b, "groups", l.Groups)
	b = appendField(b, "tls_version", l.TLSVersion, true)
	if l.Resumed {
		b = append(b, `,"resumed":true`...)
	}
	b = append(b, `,"duration_ms":`...)
	f := l.DurationMS
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) || math.IsNaN(f) || math.IsInf(f, 0) {
		j, err := json.Marshal(f) // exponent form, or the error
		if err != nil {
			return b, err
		}
		b = append(b, j...)
	} else {
		b = strconv.AppendFloat(b, f, 'f', -1, 64)
	}
	return append(b, '}'), nil
}

func appendField(b []byte, key, v string, omitEmpty bool) []byte {
	if omitEmpty && v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

func appendList(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':', '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, v)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// jsonSafe[c] says whether ASCII byte c is written as is.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// appendString appends s as a JSON string escaped as encoding/json does
// by default: quotes, backslashes and control characters, and <, > and &
// (HTML-safe); invalid UTF-8 becomes U+FFFD; U+2028 and U+2029 are
// escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
