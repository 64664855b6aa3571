package eap

import (
	"crypto/tls"
	"errors"
	"fmt"
)

// Exporter labels (RFC 5216 section 2.3, RFC 9190 section 2.3).
const (
	LabelTLS12 = "client EAP encryption"
	LabelTLS13 = "EXPORTER_EAP_TLS_Key_Material"
)

// ErrNoEMS is returned for a TLS 1.2 connection without the Extended Master
// Secret extension (RFC 7627): crypto/tls refuses to export keys from it,
// and so do we.
var ErrNoEMS = errors.New("eap: TLS 1.2 peer did not negotiate Extended Master Secret (RFC 7627); refusing to derive keys")

// ExportMSK derives the 64-byte MSK of an EAP-TLS conversation: the first 64
// of 128 exported bytes (the rest is the EMSK, not used here).
func ExportMSK(cs *tls.ConnectionState) ([]byte, error) {
	var km []byte
	var err error
	if cs.Version >= tls.VersionTLS13 {
		km, err = cs.ExportKeyingMaterial(LabelTLS13, []byte{TypeTLS}, 128)
	} else {
		// context nil, not empty: RFC 5216 uses no context at all.
		km, err = cs.ExportKeyingMaterial(LabelTLS12, nil, 128)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoEMS, err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("eap: export keying material: %w", err)
	}
	return km[:64:64], nil
}

// MPPEKeys splits an MSK into MS-MPPE-Recv-Key (MSK[0:32]) and
// MS-MPPE-Send-Key (MSK[32:64]) as a RADIUS server sends them (RFC 5216
// section 2.3 / RFC 2548).
func MPPEKeys(msk []byte) (recv, send []byte) { return msk[0:32], msk[32:64] }
