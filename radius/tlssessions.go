package radius

import (
	"fmt"

	"github.com/gatehouse/gatehouse/radius/eap"
)

// TLS session resumption. Session state stays on the server
// (eap.TicketCache): the ticket a supplicant receives is a 16-byte handle,
// not its certificate chain, so the final flight of a handshake costs no
// extra round trips however long the chain. The cache is bounded
// (tls_session_cache entries, tls_session_cache_bytes, tls_session_lifetime)
// and dropped whole by ForgetTLSSessions after a policy or trust change.
// Every resumed session is authorized again (decide), exactly like a full
// handshake.

// ticketCache builds the session cache from cfg's tls_session_* keys.
func (cfg *Config) ticketCache() (*eap.TicketCache, error) {
	c := eap.TicketCacheConfig{
		MaxEntries: cfg.TLSSessionCache,
		MaxBytes:   cfg.TLSSessionCacheBytes,
		Lifetime:   cfg.TLSSessionLifetime.Duration,
	}
	switch {
	case c.MaxEntries < 0:
		return nil, fmt.Errorf("radius: tls_session_cache %d: must be positive", c.MaxEntries)
	case c.MaxBytes < 0:
		return nil, fmt.Errorf("radius: tls_session_cache_bytes %d: must be positive", c.MaxBytes)
	case c.Lifetime < 0:
		return nil, fmt.Errorf("radius: tls_session_lifetime %v: must be positive", c.Lifetime)
	}
	return eap.NewTicketCache(c)
}

// ForgetTLSSessions drops every TLS session kept for resumption, including
// those of handshakes still running: the next login of every client is a
// full handshake under the configuration in force. cmd calls it after each
// policy swap, so no resumption crosses a trust or policy change.
func (s *Server) ForgetTLSSessions() {
	n := s.eapCfg.Tickets.Stats().Entries
	s.eapCfg.Tickets.Flush()
	s.log.Info("radius: TLS sessions forgotten", "sessions", n)
}

// TLSSessions returns the resumption cache's counts.
func (s *Server) TLSSessions() eap.TicketStats { return s.eapCfg.Tickets.Stats() }
