package radius

import (
	"crypto/md5"
	"hash"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
)

// nas is one configured client entry with pools of keyed hashes, so that
// verifying a packet allocates nothing in the steady state.
type nas struct {
	idx    int // position in the configuration (session table per-client lists)
	name   string
	prefix netip.Prefix
	secret []byte
	dyn    clientDyn // dynamic authorization (RFC 5176) settings
	hmacs  sync.Pool // hash.Hash: HMAC-MD5 keyed with secret
	// radsec is the [[radius.radsec_client]] entry; nil for UDP clients.
	radsec *radsecClient

	drops      [numDrops]atomic.Uint64 // datagrams from this client dropped, by reason
	gates      [numDrops]rateGate      // rate limit of the drop log lines
	rejectGate rateGate                // rate limit of "reject before a conversation" lines
	acctDups   atomic.Uint64           // accounting duplicates answered, not recorded (acctdedup.go)
}

func (n *nas) getHMAC() hash.Hash {
	if h, ok := n.hmacs.Get().(hash.Hash); ok {
		return h
	}
	return newHMAC(n.secret)
}

func (n *nas) putHMAC(h hash.Hash) { n.hmacs.Put(h) }

// nasTable finds the client for a source address: the most specific
// matching prefix wins.
type nasTable []*nas

func newNASTable(cs []client) nasTable {
	t := make(nasTable, 0, len(cs))
	for i, c := range cs {
		t = append(t, &nas{idx: i, name: c.name, prefix: c.prefix, secret: c.secret, dyn: c.dyn})
	}
	sort.SliceStable(t, func(i, j int) bool { return t[i].prefix.Bits() > t[j].prefix.Bits() })
	return t
}

func (t nasTable) lookup(a netip.Addr) *nas {
	a = a.Unmap()
	for _, n := range t {
		if n.prefix.Contains(a) {
			return n
		}
	}
	return nil
}

// md5Pool holds plain MD5 hashes for authenticators.
var md5Pool = sync.Pool{New: func() any { return md5.New() }}
