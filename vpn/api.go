package vpn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// maxRequestBody caps an enrollment request body.
const maxRequestBody = 4 << 10

// EnrollRequest is the body of POST /v1/enroll.
type EnrollRequest struct {
	PublicKey string `json:"public_key"` // the client's WireGuard public key, base64
}

// EnrollResponse answers a successful enrollment. Config is a complete
// wg-quick file except for the [Interface] PrivateKey line, which the client
// adds.
type EnrollResponse struct {
	Config          string    `json:"config"`
	Address         string    `json:"address"`
	Address6        string    `json:"address6,omitempty"`
	ServerPublicKey string    `json:"server_public_key"`
	Endpoint        string    `json:"endpoint"`
	Identity        string    `json:"identity"`
	Rule            string    `json:"rule"`
	Expires         time.Time `json:"expires"`
}

// MeResponse answers GET /v1/me.
type MeResponse struct {
	Identity  string    `json:"identity"`
	Rule      string    `json:"rule"`
	Address   string    `json:"address"`
	Address6  string    `json:"address6,omitempty"`
	PublicKey string    `json:"public_key"`
	Expires   time.Time `json:"expires"`
	Enrolled  time.Time `json:"enrolled"`
	Validated time.Time `json:"validated"`
	// Suspended is set while re-validation denies this certificate: the
	// tunnel is off until a later re-validation allows it again.
	Suspended *Suspension `json:"suspended,omitempty"`
}

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	Error string `json:"error"`
}

// parseEnrollRequest decodes and checks an enrollment body.
func parseEnrollRequest(body []byte) (Key, error) {
	var req EnrollRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Key{}, errors.New("request body is not the expected JSON object")
	}
	if dec.More() {
		return Key{}, errors.New("request body has trailing data")
	}
	k, err := ParseKey(req.PublicKey)
	if err != nil {
		return Key{}, fmt.Errorf("public_key: %w", err)
	}
	if k.IsLowOrder() {
		return Key{}, errors.New("public_key: not a usable Curve25519 public key (a low-order point such as all zeros)")
	}
	return k, nil
}

// apiError is an HTTP status and a message an employee can act on.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

// denial turns a policy decision into what the employee is told: the
// trouble and what to do, never the rule internals.
func denial(d policy.Decision) *apiError {
	forbid := func(m string) *apiError { return &apiError{http.StatusForbidden, m} }
	switch d.Code {
	case policy.CodeNoCertificate:
		return forbid("no client certificate presented")
	case policy.CodeUntrusted:
		return forbid("certificate not issued by a trusted authority")
	case policy.CodeBadUsage:
		return forbid("certificate not valid for client authentication")
	case policy.CodeExpired:
		return forbid("certificate expired; renew your certificate")
	case policy.CodeNotYetValid:
		return forbid("certificate not valid yet; check this device's clock")
	case policy.CodeWeakKey:
		return forbid("certificate key too weak; request a new certificate")
	case policy.CodeWeakSignature:
		return forbid("certificate signed with a weak algorithm; request a new certificate")
	case policy.CodeRevoked:
		return forbid("certificate revoked; request a new certificate")
	case policy.CodeRevocationUnknown:
		return &apiError{http.StatusServiceUnavailable, "certificate revocation status unavailable; try again later"}
	case policy.CodeNoIdentity, policy.CodeNotInDirectory:
		return forbid("your certificate does not match a known account; contact IT")
	case policy.CodeDirectoryError:
		return forbid("your account could not be identified unambiguously; contact IT")
	case policy.CodeDirectoryUnavailable, policy.CodePolicyUnavailable:
		return &apiError{http.StatusServiceUnavailable, "access service temporarily unavailable; try again later"}
	}
	return forbid("not permitted to use the VPN")
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/enroll", s.handleEnroll)
	mux.HandleFunc("GET /v1/me", s.handleMe)
	mux.HandleFunc("DELETE /v1/me", s.handleUnenroll)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, ErrorResponse{Error: e.msg})
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	outcome := enrollFailed
	defer func() {
		s.enrollLatency.Observe(time.Since(start))
		s.enrolls[outcome].Add(1)
	}()
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, &apiError{http.StatusRequestEntityTooLarge, "request body too large"})
		} else {
			writeError(w, &apiError{http.StatusBadRequest, "request body unreadable"})
		}
		return
	}
	key, err := parseEnrollRequest(body)
	if err != nil {
		writeError(w, &apiError{http.StatusBadRequest, err.Error()})
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		d := policy.Decision{Code: policy.CodeNoCertificate}
		outcome = enrollDenied
		s.audit("enroll", client, netip.Addr{}, &d, false, "", start)
		writeError(w, denial(d))
		return
	}
	chain := r.TLS.PeerCertificates
	ctx, cancel := context.WithTimeout(r.Context(), s.engine.AuthTimeout())
	defer cancel()
	d := s.auth.Authorize(ctx, chain).At(policy.DoorVPN)
	if !d.Allowed {
		s.log.Info("vpn: enrollment denied", "subject", chain[0].Subject.String(), "code", d.Code.String(), "rule", d.Rule, "reason", d.Reason)
		outcome = enrollDenied
		s.audit("enroll", client, netip.Addr{}, &d, false, "", start)
		writeError(w, denial(d))
		return
	}
	rec, aerr := s.enroll(chain, d, key)
	if aerr != nil {
		s.audit("enroll", client, netip.Addr{}, &d, false, aerr.msg, start)
		writeError(w, aerr)
		return
	}
	outcome = enrollAllowed
	s.audit("enroll", client, rec.Address, &d, true, "", start)
	s.mu.Lock()
	resp := EnrollResponse{
		Config:          s.clientConfig(rec),
		Address:         rec.Address.String(),
		ServerPublicKey: s.pubKey.String(),
		Endpoint:        s.cfg.Endpoint,
		Identity:        rec.Identity,
		Rule:            rec.Rule,
		Expires:         rec.NotAfter,
	}
	if rec.Address6.IsValid() {
		resp.Address6 = rec.Address6.String()
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, denial(policy.Decision{Code: policy.CodeNoCertificate}))
		return
	}
	fp := fingerprint(r.TLS.PeerCertificates[0])
	s.mu.Lock()
	rec := s.peers[fp]
	var resp MeResponse
	if rec != nil {
		resp = MeResponse{
			Identity: rec.Identity, Rule: rec.Rule, Address: rec.Address.String(),
			PublicKey: rec.PublicKey.String(), Expires: rec.NotAfter, Enrolled: rec.Enrolled, Validated: rec.Validated,
			Suspended: rec.Suspended,
		}
		if rec.Address6.IsValid() {
			resp.Address6 = rec.Address6.String()
		}
	}
	s.mu.Unlock()
	if rec == nil {
		writeError(w, &apiError{http.StatusNotFound, "this certificate is not enrolled"})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleUnenroll(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeError(w, denial(policy.Decision{Code: policy.CodeNoCertificate}))
		return
	}
	fp := fingerprint(r.TLS.PeerCertificates[0])
	found, err := s.removePeer(fp, "unenrolled by its holder")
	switch {
	case err != nil:
		writeError(w, &apiError{http.StatusServiceUnavailable, "the VPN registry is unavailable, so this device cannot be unenrolled right now; try again in a minute"})
		return
	case !found:
		writeError(w, &apiError{http.StatusNotFound, "this certificate is not enrolled"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
