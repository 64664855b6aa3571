// Package eap implements the parts of EAP (RFC 3748) and EAP-TLS (RFC 5216,
// with TLS 1.3 per RFC 9190) that a RADIUS server and a test or load-testing
// supplicant need: packet encoding, fragmentation and reassembly, and a
// conversation engine that runs crypto/tls over an in-memory connection.
//
// The package knows nothing about RADIUS: a ServerSession consumes EAP
// Responses and produces EAP Requests, Successes and Failures; a Peer does
// the opposite. Neither starts a goroutine until TLS data arrives, so a
// conversation that never gets past the EAP-TLS Start costs only a small
// struct. A TicketCache (ServerConfig.Tickets) keeps TLS session state on the
// server so that session tickets are 16-byte handles rather than copies of
// the client's certificate chain (tickets.go).
package eap
