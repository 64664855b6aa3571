package radius

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/radius/radbench"
)

// TestBurstNoLoss: a burst of 1,000 Access-Requests (each starting an EAP
// conversation) from one access point, sent back to back over real UDP to
// an idle server, is answered in full: the datagrams the workers cannot
// take yet wait in the socket's receive buffer, not in a queue that drops.
func TestBurstNoLoss(t *testing.T) {
	s := startServer(t, nil)
	const n = 1000
	res, err := radbench.Burst(context.Background(), s.Addr().String(), []byte(testSecret), n, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if res.Sent != n || res.Answered != n {
		t.Errorf("%s stats: drops %v", res, st.Drops)
	}
	if len(st.Drops) != 0 || st.Challenges != n {
		t.Errorf("drops %v, kernel drops %d, challenges %d", st.Drops, st.KernelDrops, st.Challenges)
	}
}
