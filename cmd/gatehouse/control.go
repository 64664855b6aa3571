package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/reval"
)

// The control socket lets admin commands talk to the running server:
// state_dir/control.sock, a unix socket of mode 0600 owned by the service
// user (so only that user — and root — may use it). One connection carries
// one request and one answer, each a line of JSON.
//
// Requests:
//
//	{"op":"reload"}                       recompile the config file, swap the
//	                                      policy, re-validate both doors, report
//	{"op":"reload","confirm_cut":true}    release the mass cut held under the
//	                                      policy in force (no recompile), report
//	{"op":"peers-remove","match":"X"}     delete VPN peers by fingerprint,
//	                                      identity or tunnel address
const controlSocketName = "control.sock"

type controlRequest struct {
	Op         string `json:"op"`
	ConfirmCut bool   `json:"confirm_cut,omitempty"`
	Match      string `json:"match,omitempty"`
}

type controlResponse struct {
	OK    bool     `json:"ok"`
	Error string   `json:"error,omitempty"`
	Lines []string `json:"lines,omitempty"`
	Held  bool     `json:"held,omitempty"` // a mass cut is held after this request
}

// controlServer serves the control socket until its context ends.
type controlServer struct {
	path   string
	log    *slog.Logger
	handle func(context.Context, controlRequest) controlResponse
}

// Run listens on the socket and serves requests until ctx is done; it
// returns after every request it started has been answered.
func (c *controlServer) Run(ctx context.Context) error {
	if _, err := os.Lstat(c.path); err == nil {
		if conn, err := net.DialTimeout("unix", c.path, time.Second); err == nil {
			conn.Close()
			return fmt.Errorf("control socket %s: another gatehouse answers on it", c.path)
		}
		// Left by a process that is gone (crash, kill -9).
		if err := os.Remove(c.path); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", c.path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(c.path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				os.Remove(c.path)
				return nil
			}
			return fmt.Errorf("control socket: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			c.serve(ctx, conn)
		}()
	}
}

func (c *controlServer) serve(ctx context.Context, conn net.Conn) {
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	var req controlRequest
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	var resp controlResponse
	if err != nil {
		resp = controlResponse{Error: "bad request: " + err.Error()}
	} else {
		c.log.Info("control request", "op", req.Op, "confirm_cut", req.ConfirmCut, "match", req.Match)
		conn.SetReadDeadline(time.Time{})
		resp = c.handle(ctx, req)
	}
	b, _ := json.Marshal(&resp)
	conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	conn.Write(append(b, '\n'))
}

// errNoServer means nothing answers on the control socket: no server runs
// with this state_dir (or an older one without the socket).
var errNoServer = errors.New("no running gatehouse answers on the control socket")

// callControl sends req to the server of stateDir and returns its answer.
func callControl(ctx context.Context, stateDir string, req controlRequest) (*controlResponse, error) {
	path := filepath.Join(stateDir, controlSocketName)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w (%s)", errNoServer, path)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	b, _ := json.Marshal(&req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("control socket: no answer: %w", err)
	}
	var resp controlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("control socket: bad answer: %w", err)
	}
	return &resp, nil
}

// stateDirOf reads only [server] state_dir of a config file, so admin
// commands reach the server even when the file no longer compiles.
func stateDirOf(file string) (string, error) {
	var c struct {
		Server struct {
			StateDir string `toml:"state_dir"`
		} `toml:"server"`
	}
	if _, err := toml.DecodeFile(file, &c); err != nil {
		return "", &configError{fmt.Sprintf("%s: %v", file, err)}
	}
	d := c.Server.StateDir
	if d == "" {
		d = "/var/lib/gatehouse"
	}
	if !filepath.IsAbs(d) {
		d = filepath.Join(filepath.Dir(file), d)
	}
	return d, nil
}

// controlHandler answers control requests for serve.
type controlHandler struct {
	s    *servers
	rl   *reloader
	file string
}

func (h *controlHandler) handle(ctx context.Context, req controlRequest) controlResponse {
	switch req.Op {
	case "reload":
		if req.ConfirmCut {
			return h.confirm(ctx)
		}
		return h.reload(ctx)
	case "peers-remove":
		if h.s.vpn == nil {
			return controlResponse{Error: "the VPN is not enabled"}
		}
		lines, err := h.s.vpn.RemovePeers(req.Match)
		if err != nil {
			return controlResponse{Error: err.Error()}
		}
		return controlResponse{OK: true, Lines: lines}
	}
	return controlResponse{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

// reload has the reloader recompile and swap, then re-validates both doors
// and reports what happened.
func (h *controlHandler) reload(ctx context.Context) controlResponse {
	before := h.s.auth.Policy()
	done := make(chan struct{})
	select {
	case h.rl.ctl <- done:
	case <-ctx.Done():
		return controlResponse{Error: "shutting down"}
	}
	select {
	case <-done:
	case <-ctx.Done():
		return controlResponse{Error: "shutting down"}
	}
	if h.s.auth.Policy() == before {
		msg := "reload failed; the policy in force stays (see the server log)"
		if _, err := loadConfig(h.file); err != nil {
			msg = "reload failed; the policy in force stays: " + err.Error()
		}
		return controlResponse{Error: msg}
	}
	resp := h.revalidate(ctx)
	resp.Lines = append([]string{fmt.Sprintf("policy reloaded from %s: %d rules", h.file, len(h.s.auth.Policy().Summary().Rules))}, resp.Lines...)
	return resp
}

// confirm releases the cuts held under the policy in force and
// re-validates so they happen now.
func (h *controlHandler) confirm(ctx context.Context) controlResponse {
	held, err := h.s.reval.Confirm()
	if err != nil {
		return controlResponse{Error: "nothing to confirm: no cut is held under the policy in force"}
	}
	var lines []string
	for _, d := range sortedDoors(held) {
		hd := held[d]
		lines = append(lines, fmt.Sprintf("confirmed: %s: %d of %d live cut for policy reasons", d, hd.Count, hd.Live))
	}
	resp := h.revalidate(ctx)
	resp.Lines = append(lines, resp.Lines...)
	return resp
}

// revalidate runs both doors' re-validation now (serialized with their
// own runs) and reports each, and any cut still held.
func (h *controlHandler) revalidate(ctx context.Context) controlResponse {
	var reps []reval.Report
	var mu sync.Mutex
	var wg sync.WaitGroup
	run := func(f func(context.Context) reval.Report) {
		defer wg.Done()
		r := f(ctx)
		mu.Lock()
		reps = append(reps, r)
		mu.Unlock()
	}
	wg.Add(1)
	go run(h.s.radius.Revalidate)
	if h.s.vpn != nil {
		wg.Add(1)
		go run(h.s.vpn.Revalidate)
	}
	wg.Wait()
	sort.Slice(reps, func(i, j int) bool { return reps[i].Door < reps[j].Door })
	resp := controlResponse{OK: true}
	for _, r := range reps {
		resp.Lines = append(resp.Lines, "re-validated "+r.String())
	}
	held := h.s.reval.Held()
	for _, d := range sortedDoors(held) {
		resp.Lines = append(resp.Lines, heldLine(held[d]))
		resp.Held = true
	}
	return resp
}

func heldLine(hd reval.Held) string {
	s := fmt.Sprintf("CUT HELD at %s: %d of %d live would be cut for policy reasons", hd.Door, hd.Count, hd.Live)
	for i, r := range hd.TopReasons {
		if i == 0 {
			s += " ("
		} else {
			s += ", "
		}
		s += fmt.Sprintf("%s ×%d", r.Reason, r.Count)
		if i == len(hd.TopReasons)-1 {
			s += ")"
		}
	}
	return s + "; nothing cut. If intended, confirm with `gatehouse reload --confirm-cut`"
}

func sortedDoors(m map[policy.Door]reval.Held) []policy.Door {
	out := make([]policy.Door, 0, len(m))
	for d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
