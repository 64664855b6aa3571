package radius

// growStack grows the calling goroutine's stack in one step, while it is
// still shallow, to the size a decision needs (authorization, the audit
// line, the MPPE keys, signing the reply). A new goroutine starts small and
// would otherwise double its stack several times, each time copying and
// re-walking every frame. radius/eap does the same for its TLS goroutines.
//
//go:noinline
func growStack() {
	var pad [16 << 10]byte
	sinkStack(pad[:])
}

//go:noinline
func sinkStack(b []byte) { _ = b[len(b)-1] }
