package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/vpn"
)

// cmdEnroll is the employee's side of the VPN: it makes a WireGuard key pair
// here, proves the certificate to gatehouse over mutual TLS, and writes the
// wg-quick configuration it gets back.
func cmdEnroll(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags("enroll", stdout)
	var o vpn.EnrollOptions
	fs.StringVar(&o.Server, "server", "", "enrollment API `URL`, e.g. https://vpn.example.com:8443")
	fs.StringVar(&o.CertFile, "cert", "", "your certificate `file` (PEM; chain may follow)")
	fs.StringVar(&o.KeyFile, "key", "", "your certificate's private key `file` (PEM)")
	fs.StringVar(&o.CAFile, "ca", "", "CA `file` that verifies the server (default: system roots)")
	fs.StringVar(&o.Output, "o", "wg0.conf", "where to write the WireGuard configuration (mode 0600); - for stdout")
	qr := fs.Bool("qr", false, "also print the configuration as a QR code for the mobile WireGuard apps")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if o.Server == "" || o.CertFile == "" || o.KeyFile == "" {
		return &usageError{"enroll: --server, --cert and --key are required"}
	}
	toStdout := o.Output == "-"
	if toStdout {
		o.Output = ""
	}
	conf, err := vpn.Enroll(ctx, o)
	if err != nil {
		return err // "vpn: enroll: ..." already
	}
	if toStdout {
		fmt.Fprint(stdout, conf)
	} else {
		fmt.Fprintf(stdout, "wrote %s; bring the tunnel up with: wg-quick up %s\n", o.Output, wgQuickArg(o.Output))
	}
	if *qr {
		return vpn.WriteQR(stdout, conf)
	}
	return nil
}

// wgQuickArg is how to name the config file path to wg-quick, which takes an
// argument without a slash as an interface name (/etc/wireguard/NAME.conf):
// a path with a slash as given, a bare file name as ./NAME.
func wgQuickArg(path string) string {
	if strings.ContainsRune(path, filepath.Separator) || strings.ContainsRune(path, '/') {
		return path
	}
	return "./" + path
}
