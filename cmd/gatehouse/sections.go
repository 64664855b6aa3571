package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/gatehouse/gatehouse/directory"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/reval"
	"github.com/gatehouse/gatehouse/policy/revocation"
	"github.com/gatehouse/gatehouse/procs"
	"github.com/gatehouse/gatehouse/radius"
	"github.com/gatehouse/gatehouse/store/postgres"
	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/pgstore"
)

// sections holds the config sections that belong to the directory, radius
// and vpn packages, decoded straight into their Config types.
type sections struct {
	Directory directory.Config `toml:"directory"`
	Radius    radius.Config    `toml:"radius"`
	VPN       vpn.Config       `toml:"vpn"`
}

// prepare resolves relative paths against the config file's directory.
func (s *sections) prepare(dir string) error {
	rel(dir, &s.Directory.File)
	rel(dir, &s.Directory.LDAP.CAFile)
	rel(dir, &s.Directory.LDAP.BindPasswordFile)
	rel(dir, &s.Radius.AccountingFile)
	for i := range s.Radius.Clients {
		rel(dir, &s.Radius.Clients[i].SecretFile)
	}
	radsecPaths(dir, &s.Radius)
	rel(dir, &s.VPN.PrivateKeyFile)
	if f := s.Directory.LDAP.CAFile; f != "" {
		// Read strictly like every PEM input (package directory, which
		// may not import policy, only pools what it finds).
		if _, err := policy.ReadCertificates(f); err != nil {
			return fmt.Errorf("directory.ldap.ca_file: %q: %w", f, err)
		}
	}
	return nil
}

// summary lines for `gatehouse check`.
func (s *sections) summary() []string {
	out := []string{fmt.Sprintf("directory:     %s", s.Directory.Backend)}
	if s.Directory.Backend == "file" {
		out[0] += " " + s.Directory.File
	} else {
		out[0] += fmt.Sprintf(" %v", s.Directory.LDAP.URLs)
	}
	out = append(out, fmt.Sprintf("radius:        auth %s, accounting %s, %d clients", s.Radius.Listen, s.Radius.AccountingListen, len(s.Radius.Clients)))
	dyn := 0
	for _, c := range s.Radius.Clients {
		if c.CoAPort == nil || *c.CoAPort > 0 {
			dyn++
		}
	}
	every := "60s"
	if d := s.Radius.RevalidateEvery.Duration; d != 0 {
		every = d.String()
	}
	out = append(out, fmt.Sprintf("               Disconnect/CoA for %d of %d clients, live sessions re-validated every %s", dyn, len(s.Radius.Clients), every))
	if s.Radius.RadSecListen != "" {
		out = append(out, fmt.Sprintf("               RadSec %s, %d radsec_client entries", s.Radius.RadSecListen, len(s.Radius.RadSecClients)))
	}
	if s.VPN.Enabled {
		out = append(out, fmt.Sprintf("vpn:           %s port %d, pool %s, enrollment %s", s.VPN.Interface, s.VPN.ListenPort, s.VPN.AddressPool, s.VPN.EnrollListen))
	} else {
		out = append(out, "vpn:           disabled")
	}
	return out
}

// dirHandle is an opened directory for one-shot commands.
type dirHandle struct {
	d       *directory.Directory
	noCache bool
}

func (h *dirHandle) Lookup(ctx context.Context, kind string, fields map[string]string) (string, []string, error) {
	if h.noCache {
		return h.d.LookupNoCache(ctx, kind, fields)
	}
	return h.d.Lookup(ctx, kind, fields)
}

func (h *dirHandle) check(ctx context.Context) error { return h.d.Check(ctx) }
func (h *dirHandle) close()                          { h.d.Close() }

// openDirectory opens the configured directory without starting background
// work (for check and explain).
func openDirectory(_ context.Context, l *loaded, logger *slog.Logger, noCache bool) (*dirHandle, error) {
	d, err := directory.New(l.cfg.Directory, logger)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: %v", l.file, err)}
	}
	return &dirHandle{d: d, noCache: noCache}, nil
}

// build creates every server of a configuration, validating it; it starts
// nothing.
type servers struct {
	dir    *directory.Directory
	auth   *policy.Authorizer
	rev    *revocation.Checker
	radius *radius.Server
	vpn    *vpn.Server // nil when disabled
	reval  *reval.Engine

	db       *postgres.DB   // [store] backend = "postgres"; nil for file
	vpnStore *pgstore.Store // the VPN registry on db; nil for file (store_vpn.go)
	wifi     *wifiShared    // the Wi-Fi spool to PostgreSQL, else nil (store_wifi.go)
	// auditStore: [store] audit = true.
	auditStore bool
	cores      *procs.Controller // server.cores = "adaptive"; nil for "all"
}

func buildServers(l *loaded, logger *slog.Logger) (*servers, error) {
	c := &l.cfg
	s := &servers{}
	var errs []string
	bad := func(err error) {
		for _, e := range splitErr(err) {
			errs = append(errs, sectionError(e))
		}
	}
	var err error
	var auth interface {
		Authorize(context.Context, []*x509.Certificate) policy.Decision
	} = refuseAll{}
	tlsConf := &tls.Config{}
	if s.dir, err = directory.New(c.Directory, logger.With("component", "directory")); err != nil {
		bad(err)
	} else if l.policy != nil { // nil: the policy did not compile (check goes on)
		s.auth = policy.NewAuthorizer(l.policy, s.dir, logger.With("component", "policy"))
		if s.rev, err = newRevocation(l, logger.With("component", "revocation")); err != nil {
			return nil, err
		}
		s.auth.SetRevocation(s.rev)
		auth, tlsConf = s.auth, s.auth.ServerTLS(0)
	}
	errs = append(errs, checkServer(&c.Server)...)
	sc := &c.Server
	// One engine for both doors: a confirmation of a held mass cut is
	// bound to the policy in force (its compiled value).
	pa := s.auth
	if s.reval, err = reval.New(reval.Config{
		AuthTimeout:    max(sc.AuthorizationTimeout.Duration, 0),
		MaxCutFraction: min(max(sc.MaxCutFraction, 0), 1),
		PolicyID:       func() any { return pa.Policy() },
	}, logger.With("component", "revalidate")); err != nil {
		bad(err)
	}
	rc := c.Radius
	if rc.AccountingFile == "" {
		rc.AccountingFile = filepath.Join(c.Server.StateDir, "accounting.jsonl")
	}
	rc.Accounting = accountingMode(c)
	if s.radius, err = radius.New(rc, auth, tlsConf, logger.With("component", "radius")); err != nil {
		errs = append(errs, allSectionErrors("radius", err, &rc, func() error {
			_, err := radius.New(rc, auth, tlsConf, slog.New(slog.DiscardHandler))
			return err
		})...)
	} else {
		if s.reval != nil {
			s.radius.SetRevalidation(s.reval)
		}
		if err := buildWiFiShared(l, s, logger); err != nil {
			errs = append(errs, strings.TrimPrefix(err.Error(), l.file+": "))
		}
	}
	if c.VPN.Enabled {
		vc := vpnConfig(c)
		if s.vpn, err = vpn.New(vc, auth, tlsConf, logger.With("component", "vpn")); err != nil {
			errs = append(errs, allSectionErrors("vpn", err, &vc, func() error {
				_, err := vpn.New(vc, auth, tlsConf, slog.New(slog.DiscardHandler))
				return err
			})...)
		} else if s.reval != nil {
			s.vpn.SetRevalidation(s.reval)
		}
		if err := s.attachVPNStore(l, logger); err != nil {
			errs = append(errs, strings.TrimPrefix(err.Error(), l.file+": "))
		}
	}
	if len(errs) > 0 {
		if s.dir != nil {
			s.dir.Close()
		}
		for i, e := range errs {
			errs[i] = l.file + ": " + e
		}
		return nil, &configError{strings.Join(l.locateAll(errs), "\n")}
	}
	return s, nil
}

// refuseAll stands in for the policy while the sections are validated
// after the directory failed: nothing is started with it.
type refuseAll struct{}

func (refuseAll) Authorize(context.Context, []*x509.Certificate) policy.Decision {
	return policy.Decision{Reason: "configuration not valid"}
}

// checkServer validates the [server] keys that buildServers uses.
func checkServer(sc *serverConfig) []string {
	var errs []string
	if sc.AuthorizationTimeout.Duration < 0 {
		errs = append(errs, fmt.Sprintf("server.authorization_timeout: %q: must be positive", sc.AuthorizationTimeout.Duration))
	}
	if sc.MaxCutFraction < 0 || sc.MaxCutFraction > 1 {
		errs = append(errs, fmt.Sprintf("server.max_cut_fraction: %v: want a fraction between 0 and 1", sc.MaxCutFraction))
	}
	return errs
}

// newRevocation builds the CRL fetcher and OCSP client of a configuration;
// its disk copies live in state_dir/revocation.
func newRevocation(l *loaded, logger *slog.Logger) (*revocation.Checker, error) {
	rc := revocation.Config{StateDir: filepath.Join(l.cfg.Server.StateDir, "revocation")}
	rev, err := revocation.New(rc, l.policy, logger)
	if err != nil {
		return nil, &configError{fmt.Sprintf("%s: %v", l.file, err)}
	}
	return rev, nil
}
