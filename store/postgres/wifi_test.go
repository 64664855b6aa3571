package postgres

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/gatehouse/gatehouse/store/pgtest"
	"github.com/gatehouse/gatehouse/store/wifi"
	"github.com/gatehouse/gatehouse/store/wifi/wifitest"
)

// The PostgreSQL store passes the same contract as the file store.
func TestWiFiContract(t *testing.T) {
	pg := pgtest.Start(t)
	var n atomic.Int32
	wifitest.Run(t, func(t *testing.T) wifi.Store {
		db := open(t, pg.CreateDatabase(fmt.Sprintf("gh_wifi_%d", n.Add(1))))
		if _, err := db.Migrate(ctx(t)); err != nil {
			t.Fatal(err)
		}
		return db.WiFi()
	})
}
