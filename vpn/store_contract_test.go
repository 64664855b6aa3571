package vpn_test

import (
	"testing"

	"github.com/gatehouse/gatehouse/vpn"
	"github.com/gatehouse/gatehouse/vpn/vpntest"
)

// The FileStore passes the one contract every backend passes (vpn/pgstore
// runs it against PostgreSQL).
func TestFileStoreContract(t *testing.T) {
	vpntest.StoreContract(t, vpntest.Backend{Fresh: func(t *testing.T) vpn.Store { return vpn.NewFileStore(t.TempDir()) }})
}
