package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"

	"github.com/gatehouse/gatehouse/vpn"
)

// The VPN server's WireGuard private key: serve and check refuse a key
// file that is missing while peers are enrolled, missing although
// [vpn] private_key_file names it, unreadable or malformed (vpn.KeyError);
// `gatehouse vpn genkey` creates one deliberately.

// vpnConfig is the VPN server's configuration: the [vpn] section with its
// state directory, state_dir/vpn.
func vpnConfig(c *fileConfig) vpn.Config {
	vc := c.VPN
	vc.StateDir = filepath.Join(c.Server.StateDir, "vpn")
	return vc
}

// vpnKeyPath returns the key file of a configuration, as the VPN server
// resolves it (state_dir/vpn/wg.key unless private_key_file is set).
func vpnKeyPath(l *loaded) (string, bool) {
	vc := vpnConfig(&l.cfg)
	return vc.KeyPath()
}

// checkVPNKey returns the configuration error of a key the VPN server
// would refuse at start (nil when the VPN is off or the key is usable).
func checkVPNKey(l *loaded, s *servers) error {
	if s.vpn == nil {
		return nil
	}
	err := s.vpn.CheckKey()
	if err == nil {
		return nil
	}
	return &configError{l.locateAll([]string{l.file + ": " + sectionError(err.Error())})[0]}
}

// vpnKeyWarning is check's warning about a key file others may read ("" if
// none).
func vpnKeyWarning(l *loaded) string {
	if !l.cfg.VPN.Enabled {
		return ""
	}
	path, _ := vpnKeyPath(l)
	_, perm, err := vpn.ReadKeyFile(path)
	if err != nil || perm&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("warning: VPN private key %s is readable by group or others (mode %04o): chmod 600 it", path, perm)
}

// cmdVPN is `gatehouse vpn genkey`.
func cmdVPN(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		args = append([]string{"genkey"}, args...) // its only subcommand's help
	}
	if len(args) == 0 || args[0] != "genkey" {
		return &usageError{"usage: gatehouse vpn genkey [--config FILE] [--force]"}
	}
	fs := newFlags("vpn genkey", stdout)
	cfgFile := configFlag(fs)
	force := fs.Bool("force", false, "replace an existing key file (every enrolled VPN client must then re-enroll)")
	l, err := parseAndLoad(fs, args[1:], cfgFile)
	if err != nil {
		return err
	}
	return vpnGenkey(l, *force, stdout, stderr)
}

// vpnGenkey writes a new key where the configuration keeps it and prints
// its public key; it warns when the key replaces one clients may hold.
func vpnGenkey(l *loaded, force bool, stdout, stderr io.Writer) error {
	path, explicit := vpnKeyPath(l)
	where := "[vpn] private_key_file"
	if !explicit {
		where = "the default in [server] state_dir"
	}
	_, _, oldErr := vpn.ReadKeyFile(path)
	replacing := !errors.Is(oldErr, fs.ErrNotExist)
	if replacing && !force {
		return fmt.Errorf("vpn genkey: %s (%s) exists: not replaced, as every enrolled VPN client holds its public key; "+
			"--force replaces it (every client must then re-enroll)", path, where)
	}
	peers, countErr := countStoredPeers(l)
	k, err := vpn.WriteKeyFile(path, force)
	if err != nil {
		return fmt.Errorf("vpn genkey: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s (%s), mode 0600\npublic key: %s\n", path, where, k.Public())
	switch {
	case countErr != nil:
		fmt.Fprintf(stderr, "warning: the peer registry could not be read (%v): if VPN clients are enrolled, they hold the old public key and every one must re-enroll (gatehouse enroll)\n", countErr)
	case peers > 0:
		fmt.Fprintf(stderr, "warning: the peer registry holds %d enrolled VPN peer(s), whose configs name the old public key: every VPN client must re-enroll (gatehouse enroll) before its tunnel works again\n", peers)
	case replacing:
		fmt.Fprintln(stderr, "warning: the old key was replaced: a VPN client enrolled with it must re-enroll")
	}
	if l.cfg.Store.Backend == "postgres" {
		fmt.Fprintln(stderr, "note: every node of the site must use this key: copy the file to each node (mode 0600) and restart them")
	}
	fmt.Fprintln(stderr, "restart gatehouse (serve) to use it; back the file up")
	return nil
}

// countStoredPeers counts the peer records of the configured registry.
func countStoredPeers(l *loaded) (int, error) {
	st, done, err := sharedPGStore(l)
	if err != nil {
		return 0, err
	}
	defer done()
	if st != nil {
		return st.CountPeers()
	}
	return vpn.NewFileStore(filepath.Join(l.cfg.Server.StateDir, "vpn", "peers")).CountPeers()
}
