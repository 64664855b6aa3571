package radbench

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	layeh "layeh.com/radius"
	"layeh.com/radius/rfc2865"
	"layeh.com/radius/rfc2869"
)

// starter makes Access-Requests that each start a new EAP conversation
// (EAP-Response/Identity, the RADIUS side of an EAPOL-Start), all with a
// valid Message-Authenticator, a distinct Identifier and a distinct
// Request Authenticator, so that a server sees each as a new request.
type starter struct {
	tmpl []byte
	h    hash.Hash
	seq  uint64
}

func newStarter(secret []byte, identity string) (*starter, error) {
	p := layeh.New(layeh.CodeAccessRequest, secret)
	rfc2865.UserName_SetString(p, identity)
	rfc2865.NASIdentifier_SetString(p, "radbench-stress")
	rfc2865.CallingStationID_SetString(p, "02-00-00-ff-ff-ff")
	rfc2865.NASPortType_Set(p, rfc2865.NASPortType_Value_Wireless80211)
	id := append([]byte{2, 0, 0, 0, 1}, identity...)
	binary.BigEndian.PutUint16(id[2:4], uint16(len(id)))
	p.Add(rfc2869.EAPMessage_Type, id)
	b, err := EncodeRequest(p)
	if err != nil {
		return nil, err
	}
	s := &starter{tmpl: b, h: hmac.New(md5.New, secret)}
	var r [8]byte
	rand.Read(r[:])
	s.seq = binary.BigEndian.Uint64(r[:])
	return s, nil
}

// next returns the next request (valid until the following call).
func (s *starter) next() []byte {
	s.seq++
	b := s.tmpl
	b[1] = byte(s.seq)
	binary.BigEndian.PutUint64(b[4:12], s.seq)
	binary.BigEndian.PutUint64(b[12:20], s.seq*0x9e3779b97f4a7c15)
	clear(b[22:38]) // Message-Authenticator, the first attribute
	s.h.Reset()
	s.h.Write(b)
	s.h.Sum(b[22:22])
	return b
}

// BurstResult is the outcome of Burst.
type BurstResult struct {
	Sent, Answered int
	SendTime       time.Duration // to send the whole burst
	Elapsed        time.Duration // until the last answer (or the wait ran out)
}

func (r BurstResult) String() string {
	return fmt.Sprintf("burst: %d Access-Requests sent in %v, %d answered, %d lost (%.1f%%), last answer after %v\n",
		r.Sent, r.SendTime.Round(time.Microsecond), r.Answered, r.Sent-r.Answered,
		100*float64(r.Sent-r.Answered)/float64(max(r.Sent, 1)), r.Elapsed.Round(time.Millisecond))
}

// Burst sends n Access-Requests, each starting a new EAP conversation,
// back to back from one socket (one access point) to addr, and counts the
// authentic answers that arrive within wait. A server that loses none
// answers n.
func Burst(ctx context.Context, addr string, secret []byte, n int, wait time.Duration) (BurstResult, error) {
	var res BurstResult
	if n <= 0 {
		return res, errors.New("radbench: burst size must be positive")
	}
	st, err := newStarter(secret, "burst")
	if err != nil {
		return res, err
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return res, fmt.Errorf("radbench: %w", err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return res, fmt.Errorf("radbench: %w", err)
	}
	defer c.Close()
	c.SetReadBuffer(8 << 20)
	// Requests by Identifier and authenticator, to check the answers.
	type key struct {
		id   byte
		auth [16]byte
	}
	pending := make(map[key]bool, n)
	answered := make(chan int, 1)
	done := make(chan struct{})
	reqs := make(map[key][]byte, n)
	start := time.Now()
	for range n {
		b := st.next()
		k := key{id: b[1], auth: [16]byte(b[4:20])}
		reqs[k] = append([]byte(nil), b...)
		pending[k] = true
	}
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		got := 0
		deadline := time.Now().Add(wait)
		for got < n {
			c.SetReadDeadline(deadline)
			m, err := c.Read(buf)
			if err != nil {
				break
			}
			raw := buf[:m]
			if m < 20 {
				continue
			}
			// The answer's authenticator is the Response
			// Authenticator: find the request by trying those with
			// its Identifier (normally one).
			for k, req := range reqs {
				if k.id == raw[1] && pending[k] && layeh.IsAuthenticResponse(raw, req, secret) {
					delete(pending, k)
					got++
					break
				}
			}
		}
		answered <- got
	}()
	for k := range reqs {
		if ctx.Err() != nil {
			break
		}
		if _, err := c.Write(reqs[k]); err != nil {
			return res, fmt.Errorf("radbench: send: %w", err)
		}
		res.Sent++
	}
	res.SendTime = time.Since(start)
	<-done
	res.Answered = <-answered
	res.Elapsed = time.Since(start)
	return res, nil
}

// FloodResult is the outcome of Flood.
type FloodResult struct {
	Sent    int
	Elapsed time.Duration
}

// Flood sends n Access-Requests, each starting a new EAP conversation that
// is never continued (half-open), from one socket bound to local (empty:
// any) to addr as fast as it can, without waiting for answers.
func Flood(ctx context.Context, addr, local string, secret []byte, n int) (FloodResult, error) {
	var res FloodResult
	st, err := newStarter(secret, "flood")
	if err != nil {
		return res, err
	}
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return res, fmt.Errorf("radbench: %w", err)
	}
	var la *net.UDPAddr
	if local != "" {
		if la, err = net.ResolveUDPAddr("udp", local); err != nil {
			return res, fmt.Errorf("radbench: flood source: %w", err)
		}
	}
	c, err := net.DialUDP("udp", la, ra)
	if err != nil {
		return res, fmt.Errorf("radbench: %w", err)
	}
	defer c.Close()
	start := time.Now()
	for res.Sent < n && ctx.Err() == nil {
		if _, err := c.Write(st.next()); err != nil {
			// ENOBUFS and friends: the sender's queue is full; try again.
			time.Sleep(50 * time.Microsecond)
			continue
		}
		res.Sent++
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// FragmentFloodResult is the outcome of FragmentFlood.
type FragmentFloodResult struct {
	Conversations int // conversations that reached their size
	Cut           int // conversations the server ended early (evicted: Reject or no answer)
	Requests      int
	Elapsed       time.Duration
}

func (r FragmentFloodResult) String() string {
	return fmt.Sprintf("fragment flood: %d conversations stuffed, %d cut short by the server, %d requests in %.1fs (%.0f/s)\n",
		r.Conversations, r.Cut, r.Requests, r.Elapsed.Seconds(), float64(r.Requests)/max(r.Elapsed.Seconds(), 1e-9))
}

// FragmentFlood opens n EAP-TLS conversations, from concurrency sockets,
// and in each sends 1,000-byte fragments of a 64,000-byte TLS message
// until size bytes are sent, then leaves it half-open: the server has to
// keep the fragments until the conversation times out or is evicted.
func FragmentFlood(ctx context.Context, addr string, secret []byte, n, size, concurrency int) (FragmentFloodResult, error) {
	var res FragmentFloodResult
	if n <= 0 || size <= 0 {
		return res, errors.New("radbench: fragment flood: conversations and size must be positive")
	}
	concurrency = max(1, concurrency)
	todo := make(chan struct{}, n)
	for range n {
		todo <- struct{}{}
	}
	close(todo)
	type tally struct{ conv, cut, reqs int }
	out := make(chan tally, concurrency)
	errs := make(chan error, concurrency)
	start := time.Now()
	for range concurrency {
		go func() {
			var tl tally
			defer func() { out <- tl }()
			c, err := net.Dial("udp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cl := &Client{Secret: secret, Timeout: 2 * time.Second, Retries: 1}
			buf := make([]byte, 4096)
			frag := make([]byte, 1000)
			var id byte
			for range todo {
				if ctx.Err() != nil {
					return
				}
				var state []byte
				eapID := byte(0)
				ok := true
				for sent := -1; sent < size && ok; {
					var msg []byte
					if sent < 0 {
						msg = append([]byte{2, 0, 0, 9, 1}, "frag"...)
					} else {
						flags := byte(0x40) // More
						if sent == 0 {
							flags |= 0x80 // Length
						}
						msg = []byte{2, eapID, 0, 0, 13, flags}
						if flags&0x80 != 0 {
							msg = binary.BigEndian.AppendUint32(msg, 64000)
						}
						msg = append(msg, frag...)
						binary.BigEndian.PutUint16(msg[2:4], uint16(len(msg)))
					}
					req := layeh.New(layeh.CodeAccessRequest, secret)
					id++
					req.Identifier = id
					rfc2865.UserName_SetString(req, "frag")
					AddEAP(req, msg, state)
					wire, err := EncodeRequest(req)
					if err != nil {
						errs <- err
						return
					}
					tl.reqs++
					var r AuthResult
					rp, _, err := cl.exchange(ctx, c, wire, buf, &r)
					if err != nil || rp.Code != layeh.CodeAccessChallenge {
						ok = false
						break
					}
					state = rfc2865.State_Get(rp)
					if e, err := rfc2869.EAPMessage_Lookup(rp); err == nil && len(e) > 1 {
						eapID = e[1]
					}
					if sent < 0 {
						sent = 0
					} else {
						sent += len(frag)
					}
				}
				if ok {
					tl.conv++
				} else {
					tl.cut++
				}
			}
		}()
	}
	for range concurrency {
		tl := <-out
		res.Conversations += tl.conv
		res.Cut += tl.cut
		res.Requests += tl.reqs
	}
	res.Elapsed = time.Since(start)
	select {
	case err := <-errs:
		return res, fmt.Errorf("radbench: %w", err)
	default:
	}
	return res, nil
}

// ProcRSS returns a process's resident set size and its peak (VmRSS,
// VmHWM from /proc/PID/status).
func ProcRSS(pid int) (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("radbench: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			peak = v << 10
		}
	}
	return rss, peak, nil
}
