package vpn

import (
	"encoding/base64"
	"math/big"
	"slices"
	"strings"
	"testing"
)

// lowOrderPoints returns the known low-order points of Curve25519 as
// libsodium's blocklist lists them (0 and 1, the two points of order 8, and
// the non-canonical encodings p-1, p, p+1), each checked here by an
// independent computation (orderDivides8) instead of taken on trust.
func lowOrderPoints(t testing.TB) []Key {
	t.Helper()
	p := curveP()
	dec := func(s string) *big.Int {
		v, ok := new(big.Int).SetString(s, 10)
		if !ok {
			t.Fatalf("bad number %s", s)
		}
		return v
	}
	us := []*big.Int{
		big.NewInt(0),
		big.NewInt(1),
		dec("325606250916557431795983626356110631294008115727848805560023387167927233504"),
		dec("39382357235489614581723060781553021112529911719440698176882885853963445705823"),
		new(big.Int).Sub(p, big.NewInt(1)),
		new(big.Int).Set(p),
		new(big.Int).Add(p, big.NewInt(1)),
	}
	var keys []Key
	for _, u := range us {
		k := keyFromInt(u)
		if !orderDivides8(k) {
			t.Fatalf("u=%v is not of low order", u)
		}
		keys = append(keys, k)
	}
	return keys
}

func curveP() *big.Int {
	p := new(big.Int).Lsh(big.NewInt(1), 255)
	return p.Sub(p, big.NewInt(19))
}

// keyFromInt encodes u little-endian in 32 bytes.
func keyFromInt(u *big.Int) Key {
	var k Key
	b := u.Bytes()
	for i := range b {
		k[i] = b[len(b)-1-i]
	}
	return k
}

// orderDivides8 reports whether the point with u-coordinate k (high bit
// masked, reduced mod p, as RFC 7748 decodes it) has order dividing 8: three
// x-only doublings (X:Z) -> ((X²-Z²)² : 4XZ(X²+AXZ+Z²)) reach infinity (Z=0).
func orderDivides8(k Key) bool {
	p := curveP()
	k[31] &= 0x7f
	le := slices.Clone(k[:])
	slices.Reverse(le)
	x := new(big.Int).Mod(new(big.Int).SetBytes(le), p)
	z := big.NewInt(1)
	a := big.NewInt(486662)
	mod := func(v *big.Int) *big.Int { return v.Mod(v, p) }
	for range 3 {
		xx, zz, xz := new(big.Int).Mul(x, x), new(big.Int).Mul(z, z), new(big.Int).Mul(x, z)
		d := new(big.Int).Sub(xx, zz)
		nx := mod(new(big.Int).Mul(d, d))
		s := new(big.Int).Add(xx, zz)
		s.Add(s, new(big.Int).Mul(a, xz))
		nz := mod(new(big.Int).Mul(new(big.Int).Mul(big.NewInt(4), xz), s))
		x, z = nx, nz
	}
	return z.Sign() == 0
}

// TestLowOrderKeysRejected: every low-order public key (and the same
// points with the ignored high bit set) is refused by the enrollment
// parser with a clear message; real keys pass.
func TestLowOrderKeysRejected(t *testing.T) {
	for i, k := range lowOrderPoints(t) {
		for _, hi := range []bool{false, true} {
			if hi {
				k[31] |= 0x80
			}
			if !orderDivides8(k) {
				t.Fatalf("point %d (high bit %v): independent check says not low-order", i, hi)
			}
			if !k.IsLowOrder() {
				t.Errorf("point %d (high bit %v) %s: IsLowOrder false", i, hi, k)
			}
			_, err := parseEnrollRequest([]byte(`{"public_key":"` + base64.StdEncoding.EncodeToString(k[:]) + `"}`))
			if err == nil || !strings.Contains(err.Error(), "low-order") {
				t.Errorf("point %d (high bit %v): parse err %v", i, hi, err)
			}
		}
	}
	for range 64 {
		priv, err := GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		pub := priv.Public()
		if pub.IsLowOrder() || orderDivides8(pub) {
			t.Fatalf("real key %s reported low-order", pub)
		}
		if _, err := parseEnrollRequest([]byte(`{"public_key":"` + pub.String() + `"}`)); err != nil {
			t.Fatalf("real key refused: %v", err)
		}
	}
}
