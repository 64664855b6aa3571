// Command gatehouse gives certificate-based network access: Wi-Fi through
// RADIUS/EAP-TLS and a WireGuard VPN, both decided by one policy.
//
// Subcommands (gatehouse help lists them; gatehouse CMD -h shows a
// command's flags, written --flag):
//
//	gatehouse serve   [--config F]                  run the servers
//	gatehouse check   [--config F] [--directory] [--json]
//	                                                 validate the configuration
//	gatehouse explain [--config F] --cert F [--chain F] [--no-cache] [--json]
//	                                                 show how a certificate is decided
//	gatehouse enroll  --server URL --cert F --key F  enroll this machine in the VPN
//	gatehouse peers   [--config F] [--json]         list enrolled VPN peers
//	gatehouse peers remove [--config F] FINGERPRINT|IDENTITY|ADDRESS
//	                                                 delete VPN peers
//	gatehouse reload  [--config F] [--confirm-cut]  reload the running server and
//	                                                 re-validate; confirm a held mass cut
//	gatehouse store   migrate|status [--config F]   apply or show the PostgreSQL schema
//	gatehouse vpn     genkey [--config F] [--force] create the VPN server's WireGuard key
//	gatehouse bench   radius ...                     load-test a RADIUS server
//	gatehouse completion bash|zsh                    print a shell completion script
//	gatehouse version
//
// The --json output of check, explain and peers is documented in
// docs/cli.md.
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
	"strings"
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

// commands is the help table: `gatehouse help` lists it, `gatehouse CMD
// -h` prints the entry's usage line above its flags, and the shell
// completion scripts offer its names. A new command gets a line here; it
// must parse its flags (newFlags, parseFlags) before it does anything, as
// the completion script is built by asking each command for -h.
var commands = []struct{ name, usage, summary string }{
	{"serve", "[--config FILE]", "run the RADIUS and VPN servers"},
	{"check", "[--config FILE] [--directory [--sample NAME]] [--json]", "validate the configuration (every error at once)"},
	{"explain", "[--config FILE] --cert FILE [--chain FILE] [--no-cache] [--json]", "show how a certificate is decided"},
	{"enroll", "--server URL --cert FILE --key FILE", "enroll this machine in the VPN"},
	{"peers", "[--config FILE] [--json] | remove [--config FILE] FINGERPRINT|IDENTITY|ADDRESS", "list or delete enrolled VPN peers"},
	{"reload", "[--config FILE] [--confirm-cut]", "reload the running server; confirm a held mass cut"},
	{"store", "migrate|status [--config FILE]", "apply or show the PostgreSQL schema"},
	{"vpn", "genkey [--config FILE] [--force]", "create the VPN server's WireGuard key (enrolled clients must then re-enroll)"},
	{"bench", "radius --server HOST:PORT --secret-file FILE --cert FILE --key FILE [flags]", "load-test a RADIUS server"},
	{"completion", "bash|zsh", "print a shell completion script"},
	{"version", "", "print the version"},
	{"help", "", "list the commands"},
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		writeHelp(stderr)
		return exitUsage
	}
	var err error
	code := exitOK
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "check":
		code, err = cmdCheck(ctx, args[1:], stdout)
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
	case "vpn":
		err = cmdVPN(args[1:], stdout, stderr)
	case "completion":
		err = cmdCompletion(args[1:], stdout)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "gatehouse", versionString())
	case "help", "-h", "--help":
		writeHelp(stdout)
	default:
		err = &usageError{fmt.Sprintf("unknown command %q (gatehouse help lists them)", args[0])}
	}
	var se *silentError
	switch {
	case err == nil:
		return code
	case errors.Is(err, flag.ErrHelp):
		return exitOK // help was asked for and printed: no error line
	case errors.As(err, &se):
		return se.code // reported on stdout already (--json)
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	var ue *usageError
	var ce *configError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	return exitFailure
}

// silentError ends a command with an exit code after it has reported the
// problem itself (in its --json output).
type silentError struct{ code int }

func (e *silentError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// newFlags returns a flag set that reports errors instead of exiting.
// -h prints the command's usage and flags to out; other flag errors are
// returned, not printed.
func newFlags(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("gatehouse "+name, flag.ContinueOnError)
	fs.SetOutput(helpOutput{out})
	fs.Usage = func() {}
	return fs
}

// helpOutput is a flag set's output: the flag package's own messages are
// dropped (parseFlags returns them as errors), and -h writes the usage to w.
type helpOutput struct{ w io.Writer }

func (helpOutput) Write(b []byte) (int, error) { return len(b), nil }

// parseFlags parses a command's flags; it accepts no argument.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseFlagsArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// parseFlagsArgs parses a command's flags and leaves its arguments in
// fs.Args(). On -h it prints the usage and returns flag.ErrHelp.
func parseFlagsArgs(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		if o, ok := fs.Output().(helpOutput); ok {
			writeUsage(o.w, fs)
		}
		return err
	}
	return &usageError{strings.TrimPrefix(fs.Name(), "gatehouse ") + ": " + dashdash(err.Error()) + " (--help lists the flags)"}
}

// configFlag adds the --config flag of every command that reads the
// configuration.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "config.toml", "configuration `file`")
}

// parseAndLoad parses a command's flags and loads the configuration file
// its --config flag names.
func parseAndLoad(fs *flag.FlagSet, args []string, cfgFile *string) (*loaded, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	return loadConfig(*cfgFile)
}
