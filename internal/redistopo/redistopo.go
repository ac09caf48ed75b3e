// Package redistopo starts private Redis topologies for tests: a standalone
// server (Single), a Redis Cluster of three primaries with a replica each
// (StartCluster), and a primary with a replica watched by three Sentinels
// (StartSentinel). They are the machine's redis-server processes (Debian's
// redis-server package, which `make up` installs) on free ports of
// 127.0.0.1, with their files in t.TempDir(); when the test ends every
// process is killed and waited for. Nothing is persisted, so a server that
// is killed and restarted comes back empty.
//
// The topologies' timeouts are short (a cluster-node-timeout of one second,
// a Sentinel down-after-milliseconds of two), so that a killed or paused
// primary is replaced within a few seconds and tests of failures stay quick.
// scripts/redis-topologies.sh starts the same topologies on fixed ports, for
// people.
//
// On Linux a server also dies when the test binary dies (Pdeathsig), so a
// test killed by its timeout leaves nothing running.
package redistopo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds every wait: for a server to answer, for a
	// topology to form or to recover from a failure.
	readyTimeout = 30 * time.Second
	// pollInterval is how often a wait checks its condition.
	pollInterval = 25 * time.Millisecond
)

// Server is one redis-server process: a standalone server, a cluster node,
// a primary or replica watched by Sentinels, or a Sentinel. It may be used
// from several goroutines, but Kill, Restart, Pause and Resume must not run
// at the same time as each other.
type Server struct {
	name   string // for messages: "cluster node 2"
	dir    string
	port   int
	args   []string      // redis-server's arguments, the same for every start
	client *redis.Client // for the package's own commands

	mu     sync.Mutex
	proc   *process // nil when not running
	paused bool
}

// process is one run of a Server.
type process struct {
	pid  int
	done chan struct{} // closed once it has exited
}

// errPortTaken is the error of a start whose port (or cluster bus port)
// someone else bound first.
var errPortTaken = errors.New("port taken")

// Addr is the server's address, "127.0.0.1:port". It stays the same across
// Kill and Restart.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Kill sends the server SIGKILL and waits for it to exit: a crash, whose
// data is lost. It fails the test if the server is not running.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	p := s.proc
	s.proc, s.paused = nil, false
	s.mu.Unlock()
	if p == nil {
		t.Fatalf("redistopo: Kill: %s (%s) is not running", s.name, s.Addr())
	}
	if err := p.kill(); err != nil {
		t.Fatalf("redistopo: Kill %s (%s): %v", s.name, s.Addr(), err)
	}
}

// Restart starts a killed server again on the same port with the same
// configuration, and waits until it answers. It comes back empty, since
// nothing is persisted; a cluster node keeps its cluster configuration
// (nodes.conf), so it rejoins its cluster under the same node ID, and a
// Sentinel keeps what it has learnt. It fails the test if the server is
// running, or cannot start (as when someone else took its port meanwhile).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if s.running() {
		t.Fatalf("redistopo: Restart: %s (%s) is running; Kill it first", s.name, s.Addr())
	}
	if err := s.start(); err != nil {
		t.Fatalf("redistopo: restart %s (%s): %v\n%s", s.name, s.Addr(), err, s.logTail())
	}
}

// Pause stops the server with SIGSTOP: it holds its connections but answers
// nothing, like a server behind a partition or in a long pause, until
// Resume.
func (s *Server) Pause(t testing.TB) {
	t.Helper()
	s.signal(t, "Pause", syscall.SIGSTOP, true)
}

// Resume continues a paused server with SIGCONT.
func (s *Server) Resume(t testing.TB) {
	t.Helper()
	s.signal(t, "Resume", syscall.SIGCONT, false)
}

func (s *Server) signal(t testing.TB, what string, sig syscall.Signal, pause bool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.proc == nil:
		t.Fatalf("redistopo: %s: %s (%s) is not running", what, s.name, s.Addr())
	case s.paused == pause:
		t.Fatalf("redistopo: %s: %s (%s) is already in that state", what, s.name, s.Addr())
	}
	if err := syscall.Kill(-s.proc.pid, sig); err != nil {
		t.Fatalf("redistopo: %s %s (%s): %v", what, s.name, s.Addr(), err)
	}
	s.paused = pause
}

// Single starts a standalone redis-server and returns once it answers.
func Single(t testing.TB) *Server {
	t.Helper()
	return startServer(t, "server", false, serverArgs)
}

// serverArgs are the arguments of every redis-server but the Sentinels.
// Replicas load what their primary sends from the socket and primaries send
// it at once (repl-diskless-sync-delay is 5 s by default), so a replica is
// in sync in milliseconds and no server writes an RDB file a restart would
// load.
func serverArgs(t testing.TB, dir string, port int) []string {
	return []string{
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no",
		"--repl-diskless-sync-delay", "0", "--repl-diskless-load", "swapdb",
	}
}

// startServer starts redis-server with the arguments args returns for its
// directory and port, on a free port (with bus, one whose port+10000, a
// cluster node's bus port, is free too), and returns once it answers, or
// fails the test. name names it in messages.
func startServer(t testing.TB, name string, bus bool, args func(t testing.TB, dir string, port int) []string) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redistopo: redis-server is not installed (%v); `make up` installs it (Debian package redis-server)", err)
	}
	s := &Server{name: name, dir: t.TempDir()}
	// Registered after TempDir's own cleanup, so it runs before it: the
	// directory is removed once no server writes to it.
	t.Cleanup(s.stop)
	// A free port may be bound by someone else before the server binds it:
	// then try another.
	for attempt := 1; ; attempt++ {
		port, err := freePort(bus)
		if err != nil {
			t.Fatalf("redistopo: %s: %v", name, err)
		}
		s.port, s.args = port, args(t, s.dir, port)
		if s.client != nil {
			_ = s.client.Close()
		}
		s.client = redis.NewClient(&redis.Options{
			Addr: s.Addr(), Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1,
			DialTimeout: time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		})
		err = s.start()
		if err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) || attempt == 5 {
			t.Fatalf("redistopo: start %s: %v\n%s", name, err, s.logTail())
		}
	}
}

// start runs the server and waits until it answers, it exits, or
// readyTimeout passes.
func (s *Server) start() error {
	logPath := filepath.Join(s.dir, "redis.log")
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the child holds its own copy
	offset, err := log.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", s.args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = sysProcAttr()
	p := &process{done: make(chan struct{})}
	// Started and waited for by one goroutine locked to its OS thread:
	// Pdeathsig fires when the thread that forked the child ends, and a
	// locked goroutine keeps its thread to itself until it returns, which is
	// after the child has exited.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.pid = cmd.Process.Pid
		started <- nil
		_ = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return err
	}
	s.mu.Lock()
	s.proc, s.paused = p, false
	s.mu.Unlock()

	// The server answering must be this one, not another that has the
	// port (and this one is about to exit for it).
	want := strconv.Itoa(p.pid)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for {
		// Dialled first by hand: go-redis logs every connection refused.
		var info string
		conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
		if err == nil {
			_ = conn.Close()
			info, err = s.client.Info(ctx, "server").Result()
		}
		if err == nil && infoField(info, "process_id") == want {
			return nil
		}
		select {
		case <-p.done:
			s.mu.Lock()
			s.proc = nil
			s.mu.Unlock()
			out, _ := os.ReadFile(logPath)
			if bytes.Contains(out[min(offset, int64(len(out))):], []byte("Address already in use")) {
				return errPortTaken
			}
			return errors.New("redis-server exited")
		case <-ctx.Done():
			return fmt.Errorf("not answering after %s (last: %v)", readyTimeout, err)
		case <-time.After(pollInterval):
		}
	}
}

// kill SIGKILLs the process's group and waits for it to exit.
func (p *process) kill() error {
	if err := syscall.Kill(-p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(readyTimeout):
		return fmt.Errorf("pid %d did not exit after SIGKILL", p.pid)
	}
}

// stop kills the server if it runs and closes its client: the cleanup.
func (s *Server) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p != nil {
		_ = p.kill()
	}
	if s.client != nil {
		_ = s.client.Close()
	}
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil
}

// live reports whether the server runs and is not paused: whether it
// should answer.
func (s *Server) live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.paused
}

// logTail is the last lines of the server's log, for failure messages.
func (s *Server) logTail() string {
	const lines = 15
	out, err := os.ReadFile(filepath.Join(s.dir, "redis.log"))
	if err != nil {
		return fmt.Sprintf("--- %s (%s): no log: %v", s.name, s.Addr(), err)
	}
	all := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	return fmt.Sprintf("--- %s (%s), last lines of its log:\n%s", s.name, s.Addr(),
		strings.Join(all[max(0, len(all)-lines):], "\n"))
}

// freePort returns a port of 127.0.0.1 nobody listens on now; with bus, one
// below 30000 whose port+10000 is free too.
func freePort(bus bool) (int, error) {
	if !bus {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	for range 100 {
		port := 20000 + rand.IntN(10000)
		if free(port) && free(port+10000) {
			return port, nil
		}
	}
	return 0, errors.New("no free pair of ports p, p+10000 in 20000-39999")
}

func free(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	_ = l.Close()
	return true
}

// waitFor calls cond until it returns nil. After readyTimeout it fails the
// test, saying that it waited for what, with cond's last error and the last
// lines of the servers' logs.
func waitFor(t testing.TB, what string, servers []*Server, cond func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			logs := make([]string, len(servers))
			for i, s := range servers {
				logs[i] = s.logTail()
			}
			t.Fatalf("redistopo: no %s after %s: %v\n%s", what, readyTimeout, err, strings.Join(logs, "\n"))
		}
		time.Sleep(pollInterval)
	}
}

// infoField is the value of a field of INFO's answer, or "".
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// live are the servers that are live.
func live(servers []*Server) []*Server {
	var out []*Server
	for _, s := range servers {
		if s.live() {
			out = append(out, s)
		}
	}
	return out
}

// byAddr is the server of servers at addr, or nil.
func byAddr(servers []*Server, addr string) *Server {
	for _, s := range servers {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}
