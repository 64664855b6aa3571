// Command gatehouse gives certificate-based network access: Wi-Fi through
// RADIUS/EAP-TLS and a WireGuard VPN, both decided by one policy.
//
// Subcommands:
//
//	gatehouse serve   [-config F]                   run the servers
//	gatehouse check   [-config F] [--directory]     validate the configuration
//	gatehouse explain [-config F] --cert F [--chain F] [--no-cache]
//	                                                 show how a certificate is decided
//	gatehouse enroll  --server URL --cert F --key F  enroll this machine in the VPN
//	gatehouse peers   [-config F]                   list enrolled VPN peers
//	gatehouse peers remove [-config F] FINGERPRINT|IDENTITY|ADDRESS
//	                                                 delete VPN peers
//	gatehouse reload  [-config F] [--confirm-cut]   reload the running server and
//	                                                 re-validate; confirm a held mass cut
//	gatehouse store   migrate|status [-config F]    apply or show the PostgreSQL schema
//	gatehouse bench   radius ...                     load-test a RADIUS server
//	gatehouse version
//
// Exit codes: 0 success (explain: access allowed); 1 runtime failure;
// 2 usage or configuration error; 3 explain: access denied; 4 reload: a
// mass cut is held, waiting for --confirm-cut.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitDenied  = 3
)

// version is set at build time with -ldflags "-X main.version=..."; when
// it is not, versionString reads the version Go recorded in the binary.
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: gatehouse serve|check|explain|enroll|peers|reload|store|bench|version [flags]")
		return exitUsage
	}
	var err error
	code := exitOK
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "check":
		err = cmdCheck(ctx, args[1:], stdout)
	case "explain":
		code, err = cmdExplain(ctx, args[1:], stdout)
	case "enroll":
		err = cmdEnroll(ctx, args[1:], stdout)
	case "peers":
		err = cmdPeers(ctx, args[1:], stdout)
	case "reload":
		code, err = cmdReload(ctx, args[1:], stdout)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout)
	case "store":
		err = cmdStore(ctx, args[1:], stdout)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "gatehouse", versionString())
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, "usage: gatehouse serve|check|explain|enroll|peers|reload|store|bench|version [flags]; gatehouse CMD -h for flags")
	default:
		err = &usageError{fmt.Sprintf("unknown command %q", args[0])}
	}
	if err == nil {
		return code
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	var ue *usageError
	var ce *configError
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	}
	return exitFailure
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// configFlag adds the -config flag of every command that reads the
// configuration.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "config.toml", "configuration `file`")
}

// parseAndLoad parses a command's flags and loads the configuration file
// its -config flag names.
func parseAndLoad(fs *flag.FlagSet, args []string, cfgFile *string) (*loaded, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return loadConfig(*cfgFile)
}
