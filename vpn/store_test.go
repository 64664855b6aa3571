package vpn

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// TestFileStoreReadErrorIsNoQuarantine: a file that cannot be read at all
// (permissions, I/O) fails the load instead of being moved aside.
func TestFileStoreReadErrorIsNoQuarantine(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files of mode 0")
	}
	dir := t.TempDir()
	st := NewFileStore(dir)
	if err := st.Save(&PeerRecord{Fingerprint: fp(1), PublicKey: newPub(t), Address: netip.MustParseAddr("100.96.0.2")}); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(dir, fp(1)+".json"), 0)
	if _, _, err := st.Load(); err == nil || !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Load: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, fp(1)+".json")); err != nil {
		t.Fatal("unreadable file moved")
	}
}
