package vpn

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWriteQR(t *testing.T) {
	var b strings.Builder
	conf := "[Interface]\nPrivateKey = " + strings.Repeat("A", 43) + "=\nAddress = 100.96.0.2/32\n\n[Peer]\nPublicKey = " +
		strings.Repeat("B", 43) + "=\nEndpoint = vpn.example.com:51820\nAllowedIPs = 10.10.0.0/16\nPersistentKeepalive = 25\n"
	if err := WriteQR(&b, conf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	width := utf8.RuneCountInString(lines[0])
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n != width {
			t.Fatalf("line %d: %d cells, want %d", i, n, width)
		}
	}
	if width < 25 || len(lines) < width/2 {
		t.Fatalf("%d×%d", width, len(lines))
	}
	if strings.Trim(lines[0], "█") != "" {
		t.Errorf("first row is not quiet zone: %q", lines[0])
	}
}
