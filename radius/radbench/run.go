package radbench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config is one load run.
type Config struct {
	// Addr is the server's authentication address, HOST:PORT.
	Addr string
	// Secret is the shared secret.
	Secret string
	// Certificate is the client certificate (with its chain) presented by
	// every supplicant; CertFile/KeyFile load one when it is empty.
	Certificate       tls.Certificate
	CertFile, KeyFile string
	// CAFile, when set, verifies the server certificate against these
	// roots (ServerName, if set, is checked too); otherwise the server is
	// not verified (a load test).
	CAFile     string
	ServerName string
	// Identity is the EAP identity; default "radbench".
	Identity string
	// Concurrency is the number of simultaneous supplicants; default 8.
	Concurrency int
	// Duration of the run; default 10s. Count, when not zero, stops after
	// that many authentications instead.
	Duration time.Duration
	Count    int
	// Rate, when not zero, paces the logins: at most Rate started per
	// second, all supplicants together (an open-loop load, as many access
	// points make). The server's CPU per login then compares across runs
	// and builds at one load; without it each run finds its own pace and
	// the CPU per login moves with it.
	Rate float64
	// TLSVersion is "1.2", "1.3" or "" (the best both sides support).
	TLSVersion string
	// Resume lets supplicants resume TLS sessions: each keeps its own
	// session cache, so after its first login every login offers the
	// ticket of its previous one.
	Resume bool
	// Groups, when not empty, are the key exchange groups the supplicants
	// offer, in order (tls.Config.CurvePreferences; see ParseGroups). Go
	// offers the post-quantum hybrid X25519MLKEM768 first by default,
	// OpenSSL 3.0 peers X25519: set Groups to compare like with like.
	Groups []tls.CurveID
	// FragSize, Timeout and Retries are passed to each Client.
	FragSize int
	Timeout  time.Duration
	Retries  int
	// ServerPID, when not zero, is a local server process whose CPU time
	// (utime+stime from /proc/PID/stat) is sampled around the run.
	ServerPID int
	// Progress is the interval of progress lines on out; default 5s, <0 off.
	Progress time.Duration
	// Flood, when not zero, is a number of bogus conversation starts
	// sent from one extra socket, bound to FloodFrom (e.g.
	// "127.0.0.2:0"; empty: any), as fast as possible while the
	// supplicants log in; the supplicants stop starting logins when the
	// flood has been sent (or Duration/Count ends first).
	Flood     int
	FloodFrom string
}

// Result summarizes a run.
type Result struct {
	Auths    int // finished conversations (accepted or rejected)
	Accepts  int
	Rejects  int
	Resumed  int                 // accepted conversations that resumed a TLS session
	Groups   map[tls.CurveID]int // key exchange of accepted conversations (a resumed TLS 1.2 one: its original)
	Failures int                 // errors (no answer, protocol errors)
	Errors   map[string]int      // failure messages, counted
	Elapsed  time.Duration
	PerSec   float64 // Auths per second

	P50, P90, P99, Max time.Duration // latency of finished conversations

	ServerCPU        time.Duration // server utime+stime during the run
	ServerCPUPerAuth time.Duration

	// Retransmitted counts finished conversations that needed at least
	// one retransmission; FirstTry is the percentage of started ones
	// (finished or failed) that finished without any.
	Retransmitted int
	FirstTry      float64

	FloodSent    int // bogus conversation starts sent (Config.Flood)
	FloodElapsed time.Duration
}

// clockTick is USER_HZ, 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// ProcCPU returns a process's user+system CPU time from /proc/PID/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("radbench: %w", err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("radbench: malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After "pid (comm)": state is field 3, utime 14, stime 15.
	if len(f) < 13 {
		return 0, errors.New("radbench: malformed /proc stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("radbench: malformed /proc stat")
	}
	return time.Duration(ut+st) * clockTick, nil
}

func (cfg *Config) tlsConfig() (*tls.Config, error) {
	cert := cfg.Certificate
	if len(cert.Certificate) == 0 && cfg.CertFile != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile); err != nil {
			return nil, fmt.Errorf("radbench: client certificate: %w", err)
		}
	}
	c := &tls.Config{ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}
	if len(cert.Certificate) > 0 {
		c.Certificates = []tls.Certificate{cert}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("radbench: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, errors.New("radbench: no certificate in CA file")
		}
		if c.ServerName == "" {
			// Verify the chain but not a name.
			c.InsecureSkipVerify = true
			roots := c.RootCAs
			c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				return verifyChain(raw, roots)
			}
		}
	} else {
		c.InsecureSkipVerify = true
	}
	switch cfg.TLSVersion {
	case "":
	case "1.2":
		c.MaxVersion = tls.VersionTLS12
	case "1.3":
		c.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("radbench: TLS version %q: want 1.2 or 1.3", cfg.TLSVersion)
	}
	if len(cfg.Groups) > 0 {
		c.CurvePreferences = slices.Clone(cfg.Groups)
	}
	return c, nil
}

// groupNames are the key exchange groups ParseGroups knows.
var groupNames = map[string]tls.CurveID{
	"x25519":         tls.X25519,
	"x25519mlkem768": tls.X25519MLKEM768,
	"p256":           tls.CurveP256,
	"p384":           tls.CurveP384,
	"p521":           tls.CurveP521,
	"secp256r1":      tls.CurveP256,
	"secp384r1":      tls.CurveP384,
	"secp521r1":      tls.CurveP521,
}

// ParseGroups parses a comma-separated list of key exchange groups
// (x25519, x25519mlkem768, p256, p384, p521; case-insensitive), in order
// of preference. "" is nil: the TLS library's default.
func ParseGroups(s string) ([]tls.CurveID, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var ids []tls.CurveID
	for _, f := range strings.Split(s, ",") {
		name := strings.ToLower(strings.TrimSpace(f))
		id, ok := groupNames[name]
		if !ok {
			return nil, fmt.Errorf("radbench: key exchange group %q: want x25519, x25519mlkem768, p256, p384 or p521", f)
		}
		if slices.Contains(ids, id) {
			return nil, fmt.Errorf("radbench: key exchange group %q listed twice", f)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func verifyChain(raw [][]byte, roots *x509.CertPool) error {
	if len(raw) == 0 {
		return errors.New("no server certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return err
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

// Run runs the load and writes a progress line every Progress and a
// summary to out.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	if cfg.Addr == "" || cfg.Secret == "" {
		return Result{}, errors.New("radbench: address and secret are required")
	}
	conf, err := cfg.tlsConfig()
	if err != nil {
		return Result{}, err
	}
	conc := cfg.Concurrency
	if conc <= 0 {
		conc = 8
	}
	dur := cfg.Duration
	if dur <= 0 {
		dur = 10 * time.Second
	}
	if cfg.Count > 0 {
		dur = 24 * time.Hour
	}
	progress := cfg.Progress
	if progress == 0 {
		progress = 5 * time.Second
	}
	ident := cfg.Identity
	if ident == "" {
		ident = "radbench"
	}
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()

	var cpu0 time.Duration
	if cfg.ServerPID > 0 {
		if cpu0, err = ProcCPU(cfg.ServerPID); err != nil {
			return Result{}, err
		}
	}
	var (
		mu      sync.Mutex // guards the fields below
		lat     []time.Duration
		res     = Result{Errors: map[string]int{}, Groups: map[tls.CurveID]int{}}
		started int
	)
	floodDone := make(chan struct{})
	var flood FloodResult
	var floodErr error
	if cfg.Flood > 0 {
		go func() {
			defer close(floodDone)
			flood, floodErr = Flood(ctx, cfg.Addr, cfg.FloodFrom, []byte(cfg.Secret), cfg.Flood)
		}()
	}
	var pace <-chan time.Time
	if cfg.Rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / cfg.Rate))
		defer t.Stop()
		pace = t.C // a tick not taken is lost: the rate never exceeds Rate
	}
	take := func() bool {
		if pace != nil {
			select {
			case <-pace:
			case <-ctx.Done():
				return false
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if cfg.Count > 0 && started >= cfg.Count {
			return false
		}
		if cfg.Flood > 0 && isDone(floodDone) {
			return false
		}
		started++
		return true
	}
	start := time.Now()
	end, _ := ctx.Deadline()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conf := conf
			if cfg.Resume {
				conf = conf.Clone()
				conf.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			c := &Client{Addr: cfg.Addr, Secret: []byte(cfg.Secret), FragSize: cfg.FragSize, Timeout: cfg.Timeout, Retries: cfg.Retries,
				CallingStationID: fmt.Sprintf("02-00-00-%02x-%02x-%02x", byte(w>>16), byte(w>>8), byte(w))}
			for ctxDone(ctx) == nil && take() {
				t0 := time.Now()
				r, err := c.Authenticate(ctx, ident, conf)
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil && (ctx.Err() != nil || !time.Now().Before(end)):
					// cut short by the end of the run: not counted
				case err != nil:
					res.Failures++
					res.Errors[err.Error()]++
				default:
					res.Auths++
					if r.Retrans > 0 {
						res.Retransmitted++
					}
					lat = append(lat, d)
					if r.Accepted {
						res.Accepts++
						if r.TLS.DidResume {
							res.Resumed++
						}
						if r.TLS.CurveID != 0 {
							res.Groups[r.TLS.CurveID]++
						}
					} else {
						res.Rejects++
					}
				}
				mu.Unlock()
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if progress > 0 {
		t := time.NewTicker(progress)
	loop:
		for {
			select {
			case <-done:
				break loop
			case <-t.C:
				mu.Lock()
				el := time.Since(start)
				fmt.Fprintf(out, "radbench: %6.1fs  auths %d (%.0f/s)  accepts %d  rejects %d  failures %d\n",
					el.Seconds(), res.Auths, float64(res.Auths)/el.Seconds(), res.Accepts, res.Rejects, res.Failures)
				mu.Unlock()
			}
		}
		t.Stop()
	}
	<-done
	res.Elapsed = time.Since(start)
	if cfg.Flood > 0 {
		cancel()
		<-floodDone
		if floodErr != nil {
			return res, floodErr
		}
		res.FloodSent, res.FloodElapsed = flood.Sent, flood.Elapsed
	}
	if n := res.Auths + res.Failures; n > 0 {
		res.FirstTry = 100 * float64(res.Auths-res.Retransmitted) / float64(n)
	}
	if cfg.ServerPID > 0 {
		cpu1, err := ProcCPU(cfg.ServerPID)
		if err == nil {
			res.ServerCPU = cpu1 - cpu0
			if res.Auths > 0 {
				res.ServerCPUPerAuth = res.ServerCPU / time.Duration(res.Auths)
			}
		}
	}
	if res.Elapsed > 0 {
		res.PerSec = float64(res.Auths) / res.Elapsed.Seconds()
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	res.P50, res.P90, res.P99 = pct(0.50), pct(0.90), pct(0.99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	fmt.Fprint(out, res.String())
	return res, nil
}

// String is the run summary.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "auths %d in %.2fs: %.1f/s  (accepts %d, rejects %d, failures %d)\n",
		r.Auths, r.Elapsed.Seconds(), r.PerSec, r.Accepts, r.Rejects, r.Failures)
	if r.Resumed > 0 {
		fmt.Fprintf(&b, "resumed %d of %d accepts\n", r.Resumed, r.Accepts)
	}
	if len(r.Groups) > 0 {
		ids := slices.Sorted(maps.Keys(r.Groups))
		b.WriteString("key exchange")
		for _, id := range ids {
			fmt.Fprintf(&b, " %v %d", id, r.Groups[id])
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "latency p50 %v  p90 %v  p99 %v  max %v\n", r.P50.Round(time.Microsecond),
		r.P90.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))
	fmt.Fprintf(&b, "without retransmission: %.2f%% (%d retransmitted)\n", r.FirstTry, r.Retransmitted)
	if r.FloodSent > 0 {
		fmt.Fprintf(&b, "flood: %d bogus conversation starts in %.2fs (%.0f/s)\n", r.FloodSent, r.FloodElapsed.Seconds(),
			float64(r.FloodSent)/max(r.FloodElapsed.Seconds(), 1e-9))
	}
	if r.ServerCPU > 0 {
		fmt.Fprintf(&b, "server CPU %v, %v per auth\n", r.ServerCPU, r.ServerCPUPerAuth.Round(time.Microsecond))
	}
	for msg, n := range r.Errors {
		fmt.Fprintf(&b, "error x%d: %s\n", n, msg)
	}
	return b.String()
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
