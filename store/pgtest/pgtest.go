// Package pgtest starts throwaway PostgreSQL servers for tests: Debian's
// postgresql package, initdb into a temporary directory, a free port on
// 127.0.0.1 and a private socket directory. Like the slapd and FreeRADIUS
// harnesses it never touches a server it did not start (the package's own
// cluster on 5432 is left alone). initdb and postgres refuse to run as
// root; as root (CI) they run as the postgres user the package creates.
package pgtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/policy/policytest"
)

// Server is one private PostgreSQL cluster.
type Server struct {
	t    testing.TB
	bin  string // directory of initdb, pg_ctl, postgres
	dir  string // owns data/ and sock/
	Port int
	User string // superuser name, "gatehouse"
	uid  int    // owner of the cluster when started as root, else -1
	gid  int
}

// binDir finds the newest /usr/lib/postgresql/N/bin.
func binDir() (string, bool) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(m) == 0 {
		return "", false
	}
	sort.Slice(m, func(i, j int) bool {
		a, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[i]))))
		b, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m[j]))))
		return a < b
	})
	return filepath.Dir(m[len(m)-1]), true
}

// Start initialises and starts a cluster, stopped (fast) when the test
// ends. The test is skipped without PostgreSQL, or failed under
// GATEHOUSE_REQUIRE_INTEROP=1.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, ok := binDir()
	policytest.RequireInterop(t, ok, "PostgreSQL server (Debian package postgresql) not installed")
	s := &Server{t: t, bin: bin, User: "gatehouse", uid: -1, gid: -1}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		policytest.RequireInterop(t, err == nil, "running as root and there is no postgres user to run PostgreSQL as")
		if err != nil {
			return nil
		}
		s.uid, _ = strconv.Atoi(u.Uid)
		s.gid, _ = strconv.Atoi(u.Gid)
	}
	// Not t.TempDir: its parents are 0700 root, which the postgres user
	// cannot traverse.
	dir, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = dir
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, s.sockDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if s.uid >= 0 {
			if err := os.Chown(d, s.uid, s.gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.run("initdb", "-D", s.dataDir(), "-A", "trust", "-U", s.User, "-E", "UTF8", "--no-sync", "--no-instructions")
	s.Port = freePort(t)
	s.start()
	t.Cleanup(func() { s.pgctl("stop", "-m", "immediate") })
	return s
}

func (s *Server) dataDir() string { return filepath.Join(s.dir, "data") }
func (s *Server) sockDir() string { return filepath.Join(s.dir, "sock") }

// DSN is a connection string for database name on this server.
func (s *Server) DSN(database string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", s.User, s.Port, database)
}

// SocketDSN is DSN over the server's Unix socket, which processes in
// other network namespaces of this machine reach too.
func (s *Server) SocketDSN(database string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", s.sockDir(), s.Port, s.User, database)
}

// CreateDatabase makes an empty database and returns its DSN.
func (s *Server) CreateDatabase(name string) string {
	s.t.Helper()
	s.run("createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(s.Port), "-U", s.User, name)
	return s.DSN(name)
}

// Stop shuts the server down (fast: open sessions are ended), as an
// outage would.
func (s *Server) Stop() { s.t.Helper(); s.pgctl("stop", "-m", "fast") }

// Start starts a stopped server again on the same port.
func (s *Server) Restart() { s.t.Helper(); s.start() }

// Kill sends SIGKILL to the postmaster: a crash, not a shutdown.
func (s *Server) Kill() {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dataDir(), "postmaster.pid"))
	if err != nil {
		s.t.Fatalf("pgtest: kill: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
	if err != nil {
		s.t.Fatalf("pgtest: kill: postmaster.pid: %v", err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	// Wait for the port to close so a Restart can bind it.
	for i := 0; i < 200; i++ {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (s *Server) start() {
	s.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", s.Port, s.sockDir())
	s.pgctl("start", "-w", "-t", "30", "-l", filepath.Join(s.dir, "log"), "-o", opts)
}

func (s *Server) pgctl(args ...string) {
	s.t.Helper()
	s.run("pg_ctl", append([]string{"-D", s.dataDir()}, args...)...)
}

// run runs a PostgreSQL tool, as the postgres user when we are root.
func (s *Server) run(tool string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, tool), args...)
	if s.uid >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(s.uid), Gid: uint32(s.gid)}}
	}
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "TZ=UTC")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		s.t.Fatalf("pgtest: %s %s: %v\n%s\n%s", tool, strings.Join(args, " "), err, out.Bytes(), log)
	}
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
