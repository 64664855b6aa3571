package vpn

import (
	"bufio"
	"fmt"
	"io"

	"rsc.io/qr"
)

// WriteQR renders text (a wg-quick configuration, which carries the private
// key: show it only to its owner) as a QR code for a terminal, for the
// WireGuard mobile apps to scan. Each character cell holds two modules
// (Unicode half blocks); light modules are drawn, dark ones left blank, as
// `qrencode -t utf8` does for terminals with a dark background.
func WriteQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.L)
	if err != nil {
		return fmt.Errorf("vpn: QR code: %w", err)
	}
	const quiet = 2
	light := func(x, y int) bool { return !code.Black(x, y) } // Black is false outside the code
	bw := bufio.NewWriter(w)
	for y := -quiet; y < code.Size+quiet; y += 2 {
		for x := -quiet; x < code.Size+quiet; x++ {
			top, bottom := light(x, y), light(x, y+1)
			if y+1 >= code.Size+quiet {
				bottom = false
			}
			switch {
			case top && bottom:
				bw.WriteString("█")
			case top:
				bw.WriteString("▀")
			case bottom:
				bw.WriteString("▄")
			default:
				bw.WriteByte(' ')
			}
		}
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
