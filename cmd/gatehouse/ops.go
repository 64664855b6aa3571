package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse/gatehouse/netlimit"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
	"github.com/gatehouse/gatehouse/policy/metric"
)

// ops is what serve adds for operators: the audit trail, the decision
// counters, the Prometheus registry and the /metrics, /healthz and /readyz
// endpoints.
type ops struct {
	audit     *audit.Writer // nil when server.audit = "off"
	decisions *decisionCounter
	dirQuery  metric.Histogram
	reg       *prometheus.Registry
	listen    string // "" = no metrics endpoint
	pprof     bool   // serve net/http/pprof on the metrics endpoint
	caps      netlimit.Config
	log       *slog.Logger
	metricsLn atomic.Pointer[netlimit.Listener] // the capped metrics listener, once runMetrics made it
}

// Default connection caps of the metrics endpoint.
const (
	defaultMetricsMaxConns      = 64
	defaultMetricsMaxConnsPerIP = 8
)

// newOps builds the audit writer and the registry and hands the auditor to
// the doors and the query observer to the directory. It starts nothing.
func newOps(c *serverConfig, s *servers, stdout io.Writer, logger *slog.Logger) (*ops, error) {
	o := &ops{listen: c.MetricsListen, pprof: c.Pprof, log: logger.With("component", "ops"), reg: prometheus.NewRegistry()}
	o.caps = netlimit.Config{MaxConns: c.MetricsMaxConns, MaxConnsPerIP: c.MetricsMaxConnsPerIP}.WithDefaults(
		netlimit.Config{MaxConns: defaultMetricsMaxConns, MaxConnsPerIP: defaultMetricsMaxConnsPerIP})
	switch c.Audit {
	case "", "file":
		ac := audit.Config{File: filepath.Join(c.StateDir, "audit.jsonl"), MaxSize: int64(c.AuditMaxSizeMB) << 20, Keep: c.AuditKeep}
		w, err := audit.New(ac, logger.With("component", "audit"))
		if err != nil {
			return nil, err
		}
		o.audit = w
	case "stdout":
		w, err := audit.New(audit.Config{Output: stdout}, logger.With("component", "audit"))
		if err != nil {
			return nil, err
		}
		o.audit = w
	}
	var next policy.Auditor
	if o.audit != nil {
		next = o.audit
	}
	next = s.wifi.auditor(next, s.auditStore)
	o.decisions = newDecisionCounter(next)
	s.radius.SetAuditor(o.decisions)
	if s.vpn != nil {
		s.vpn.SetAuditor(o.decisions)
	}
	s.dir.SetQueryObserver(&o.dirQuery)

	now := time.Now
	o.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newRadiusCollector(s.radius.Stats),
		newDirectoryCollector(s.dir.Stats, &o.dirQuery, s.dir.Ready),
		newRevocationCollector(s.rev.Stats, func() []policy.CRLFile { return s.auth.Policy().CRLFiles() }, now),
		o.decisions,
		newHeldCollector(s.reval.Held, doorsOf(s)...),
		newListenerCollector(o.listenerStats(s)),
		&readyCollector{checks: func() map[string]error { return readiness(s) }, desc: desc("ready", "1 if a readiness check passes, by component.", "component")},
	)
	if s.radius.RadSecEnabled() {
		o.reg.MustRegister(newRadSecCollector(s.radius.RadSecStats))
	}
	if s.vpn != nil {
		o.reg.MustRegister(newVPNCollector(s.vpn, now))
	}
	if o.audit != nil {
		o.reg.MustRegister(newAuditCollector(o.audit.Stats))
	}
	if s.wifi != nil {
		o.reg.MustRegister(newWiFiStoreCollector(s.wifi, s.radius))
	}
	if pc := s.cores; pc != nil {
		o.reg.MustRegister(newCoresCollector(func() (int, int, uint64) { return pc.Procs(), pc.Max(), pc.Changes() }))
	}
	return o, nil
}

// readiness runs every readiness check: the listeners are up, the trust
// material and CRLs are loaded, the directory can answer (or is within its
// outage policy). An expired CRL is a *degradedError: reported, still
// ready.
func readiness(s *servers) map[string]error {
	r := map[string]error{
		"radius":    s.radius.Ready(),
		"directory": s.dir.Ready(),
		"trust":     nil,
	}
	if s.auth.ServerTLS(0) == nil {
		r["trust"] = errors.New("no server certificate")
	}
	var missing []string
	for _, c := range s.rev.Stats().CRLs {
		if c.ThisUpdate.IsZero() {
			missing = append(missing, c.CA)
		}
	}
	if len(missing) > 0 {
		r["trust"] = fmt.Errorf("no CRL loaded yet for %s", strings.Join(missing, "; "))
	}
	if r["trust"] == nil {
		r["trust"] = expiredCRLs(crlsInUse(s.auth.Policy().CRLFiles(), s.rev.Stats()), time.Now())
	}
	if s.vpn != nil {
		r["vpn"] = s.vpn.Serving()
	}
	if err, ok := storeReady(s); ok {
		r["store"] = err
	}
	if s.wifi != nil {
		r["spool"] = s.wifi.Ready()
	}
	return r
}

func doorsOf(s *servers) []policy.Door {
	if s.vpn != nil {
		return []policy.Door{policy.DoorWiFi, policy.DoorVPN}
	}
	return []policy.Door{policy.DoorWiFi}
}

// warnings are conditions an operator must see on /readyz that are no
// reason to take the node out of service: a held mass cut means the node
// keeps serving everyone it served — draining it would cut them all.
func warnings(s *servers) []string {
	var out []string
	held := s.reval.Held()
	for _, d := range sortedDoors(held) {
		h := held[d]
		out = append(out, fmt.Sprintf("policy: cut held (%d %s) — confirm with gatehouse reload --confirm-cut", h.Count, heldNoun(d)))
	}
	return out
}

func heldNoun(d policy.Door) string {
	if d == policy.DoorVPN {
		return "VPN peers"
	}
	return "Wi-Fi sessions"
}

// handler serves /metrics, /healthz (the process is up) and /readyz (every
// readiness check passes: 200, else 503 with the failing checks).
func (o *ops) handler(s *servers) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelError), Registry: o.reg,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		res := readiness(s)
		var b strings.Builder
		status := http.StatusOK
		for _, k := range sortedKeys(res) {
			if err := res[k]; err != nil {
				if !isDegraded(err) {
					status = http.StatusServiceUnavailable
				}
				// "directory: file: ...", not "directory: directory: file: ...".
				if msg := err.Error(); strings.HasPrefix(msg, k+": ") {
					fmt.Fprintf(&b, "%s\n", msg)
				} else {
					fmt.Fprintf(&b, "%s: %s\n", k, msg)
				}
			} else {
				fmt.Fprintf(&b, "%s: ok\n", k)
			}
		}
		for _, warn := range warnings(s) {
			fmt.Fprintf(&b, "%s\n", warn)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, b.String())
	})
	if o.pprof {
		// server.pprof: the profiler, on this listener only (never the
		// default mux, which nothing serves).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func isDegraded(err error) bool {
	var d *degradedError
	return errors.As(err, &d)
}

// runAudit runs the audit writer (if any) until ctx is done.
func (o *ops) runAudit(ctx context.Context) error {
	if o.audit == nil {
		return nil
	}
	return o.audit.Run(ctx)
}

// runMetrics serves the metrics endpoint until ctx is done.
func (o *ops) runMetrics(ctx context.Context, s *servers) error {
	if o.listen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("metrics_listen: %w", err)
	}
	capped := netlimit.Wrap(ln, o.caps)
	o.metricsLn.Store(capped)
	hs := &http.Server{
		Handler:           o.handler(s),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second, // scrapers reconnect; idle keep-alives must not pile up
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
	}
	o.log.Info("metrics: listening", "addr", ln.Addr().String(),
		"max_conns", o.caps.MaxConns, "max_conns_per_ip", o.caps.MaxConnsPerIP)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(capped) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
