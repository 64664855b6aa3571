package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetricsConnectionCaps: one source holding its maximum of idle
// connections to the metrics endpoint gets its next one closed at once
// (and counted), while /metrics and /readyz still answer another source.
func TestMetricsConnectionCaps(t *testing.T) {
	auth := freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, auth))(s)
		s = replace(`accounting_listen = "127.0.0.1:1813"`, `accounting_listen = "off"`)(s)
		s = replace(`metrics_max_conns = 64 `, `metrics_max_conns = 6 `)(s)
		return replace(`metrics_max_conns_per_ip = 8 `, `metrics_max_conns_per_ip = 3 `)(s)
	})
	srv := startServe(t, f, io.Discard)
	waitFor(t, "metrics listening", func() bool { return reMetricsAddr.MatchString(srv.logs.String()) })
	addr := reMetricsAddr.FindStringSubmatch(srv.logs.String())[1]

	var held []net.Conn
	dial := func(src string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err == nil {
			held = append(held, c)
		}
		return c, err
	}
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 3 {
		if _, err := dial("127.0.0.1"); err != nil { // idle: sends nothing
			t.Fatal(err)
		}
	}
	// Accepted in order, so this one meets the cap the three above hold:
	// reset at once (even before connect returns, on a fast machine).
	if over, err := dial("127.0.0.1"); err == nil {
		over.SetReadDeadline(time.Now().Add(3 * time.Second)) // < read_header_timeout: only the cap closes it
		if _, err := over.Read(make([]byte, 1)); err == nil {
			t.Fatal("4th connection from 127.0.0.1 answered")
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("4th connection from 127.0.0.1 held open over the per-IP cap of 3")
		}
	}

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext,
	}}
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+path, nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s from 127.0.0.2 while 127.0.0.1 holds its cap: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`gatehouse_listener_rejected_total{listener="metrics"} 1`,
		`gatehouse_listener_connections{listener="metrics"} 4`, // the three idle ones and this scrape
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s", code, body)
	}
	hc.CloseIdleConnections()
	for _, c := range held {
		c.Close() // else shutdown waits out their read_header_timeout
	}
	srv.stopClean(t)
}
