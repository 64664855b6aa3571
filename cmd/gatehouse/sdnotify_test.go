package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// notifySocket is a stand-in for systemd's notification socket: it
// collects the datagrams sent to it.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return n
}

// next returns the next message, failing the test after a while.
func (n *notifySocket) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		return m
	case <-time.After(20 * time.Second):
		t.Fatalf("no sd_notify message: %s", what)
		return ""
	}
}

func TestSDNotifierMessages(t *testing.T) {
	sock := newNotifySocket(t)
	sd, err := newSDNotifier(sock.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.notify("READY=1"); err != nil {
		t.Fatal(err)
	}
	if m := sock.next(t, "READY"); m != "READY=1" {
		t.Errorf("got %q", m)
	}
	if err := sd.reloading(); err != nil {
		t.Fatal(err)
	}
	m := sock.next(t, "RELOADING")
	var usec int64
	if !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("reloading sent %q", m)
	}
	fmt.Sscanf(strings.Split(m, "\n")[1], "MONOTONIC_USEC=%d", &usec)
	if usec <= 0 {
		t.Errorf("MONOTONIC_USEC not a positive number: %q", m)
	}

	// Not started by systemd: nothing to do, no error.
	if sd, err := newSDNotifier(""); sd != nil || err != nil || sd.notify("READY=1") != nil {
		t.Errorf("empty NOTIFY_SOCKET: %v %v", sd, err)
	}
	if _, err := newSDNotifier("vsock:2:1234"); err == nil {
		t.Error("a vsock NOTIFY_SOCKET was accepted")
	}
	// An abstract socket name ("@…") is the leading-NUL namespace.
	if runtime.GOOS != "linux" {
		return
	}
	name := fmt.Sprintf("@gatehouse-test-%d", os.Getpid())
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sd, _ = newSDNotifier(name)
	if err := sd.notify("STOPPING=1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if k, err := c.Read(buf); err != nil || string(buf[:k]) != "STOPPING=1" {
		t.Errorf("abstract socket got %q, %v", buf[:k], err)
	}
}

// TestReloadNotifiesSystemd: a SIGHUP reload is bracketed by RELOADING=1
// and READY=1, and so is a refused one (the service keeps serving): with
// ExecReload waiting on the result, `systemctl reload` neither hangs nor
// leaves the unit "reloading".
func TestReloadNotifiesSystemd(t *testing.T) {
	sock := newNotifySocket(t)
	f := writeConfig(t, nil)
	l, err := loadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(f)
	r := newReloader(l, policy.NewAuthorizer(l.policy, nil, nil), slog.New(slog.DiscardHandler))
	r.every = time.Hour
	r.hup = make(chan os.Signal, 1)
	r.notify, _ = newSDNotifier(sock.path)
	r.reloaded = make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Before start-up finished, a reload announces nothing (a READY=1
	// would end the start too early).
	r.hup <- syscall.SIGHUP
	<-r.reloaded
	select {
	case m := <-sock.msgs:
		t.Fatalf("before READY: %q", m)
	case <-time.After(500 * time.Millisecond):
	}
	r.notify.up()
	if m := sock.next(t, "up"); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("up sent %q", m)
	}
	for _, tc := range []struct {
		name string
		file []byte
	}{
		{"good", raw},
		{"refused", []byte(replace(`vlan = "20"`, `vlan = "9999"`)(string(raw)))},
	} {
		writeFile(t, f, tc.file)
		r.hup <- syscall.SIGHUP
		<-r.reloaded
		if m := sock.next(t, tc.name+" reload start"); !strings.HasPrefix(m, "RELOADING=1\n") {
			t.Errorf("%s: first message %q, want RELOADING=1", tc.name, m)
		}
		if m := sock.next(t, tc.name+" reload end"); !strings.HasPrefix(m, "READY=1") {
			t.Errorf("%s: second message %q, want READY=1", tc.name, m)
		}
	}
}

// TestServeNotifiesSystemd: READY=1 only once RADIUS listens, STOPPING=1
// when shutdown starts.
func TestServeNotifiesSystemd(t *testing.T) {
	sock := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", sock.path)
	port := freeUDPPort(t)
	f := writeConfig(t, func(s string) string {
		s = replace(`listen = "127.0.0.1:1812"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, port))(s)
		return replace(`accounting_listen = "127.0.0.1:1813"`, `accounting_listen = "off"`)(s)
	})
	s := startServe(t, f, nil)
	if m := sock.next(t, "ready"); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("first message %q", m)
	}
	if !strings.Contains(s.logs.String(), "radius: listening") {
		t.Error("READY=1 before RADIUS listened")
	}
	s.stopClean(t)
	if m := sock.next(t, "stopping"); !strings.HasPrefix(m, "STOPPING=1") {
		t.Fatalf("at shutdown: %q", m)
	}
}
