// Package radbench is a load generator for RADIUS EAP-TLS servers: many
// concurrent in-process supplicants (crypto/tls over EAP over RADIUS over
// real UDP) against any server, reporting authentications per second,
// latency percentiles and, for a local server process, its CPU time per
// authentication. Client is the reusable single-conversation supplicant.
package radbench
