package wifi_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
	"github.com/gatehouse/gatehouse/store/wifi/wifitest"
)

func TestFileStoreContract(t *testing.T) {
	wifitest.Run(t, func(t *testing.T) wifi.Store {
		s, err := wifi.OpenFile(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// Reopening rebuilds what was stored: a replay after a restart adds nothing.
func TestFileStoreReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := wifi.OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := wifitest.AcctEntry(1, "start", "s")
	if err := s.Apply(t.Context(), "a", []spool.Entry{e}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = wifi.OpenFile(dir); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Apply(t.Context(), "a", []spool.Entry{e}); err != nil {
		t.Fatal(err)
	}
	if rows, _ := s.Accounting(t.Context(), ""); len(rows) != 1 {
		t.Fatalf("%d rows after a replay across a restart, want 1", len(rows))
	}
}
