package radius

import (
	"crypto/rand"

	layeh "layeh.com/radius"
)

// addMPPE adds MS-MPPE-Recv-Key and MS-MPPE-Send-Key (RFC 2548 section
// 2.4.2/2.4.3), each salt-encrypted with the shared secret and the Request
// Authenticator. The two salts differ, as RFC 2548 requires, and have
// their high bit set.
func addMPPE(r *reply, secret, reqAuth, recv, send []byte) error {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return err
	}
	salt[0] |= 0x80
	salt[2] |= 0x80
	if salt[0] == salt[2] && salt[1] == salt[3] {
		salt[3] ^= 1
	}
	a, err := layeh.NewTunnelPassword(recv, salt[0:2], secret, reqAuth)
	if err != nil {
		return err
	}
	r.addVSA(vendorMS, msMPPERecv, a)
	b, err := layeh.NewTunnelPassword(send, salt[2:4], secret, reqAuth)
	if err != nil {
		return err
	}
	r.addVSA(vendorMS, msMPPESend, b)
	return nil
}
