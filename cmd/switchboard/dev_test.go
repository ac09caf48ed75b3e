package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/internal/devpg"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// devProc is a `switchboard dev` child process.
type devProc struct {
	cmd     *exec.Cmd
	out     []string // stdout up to the "running" line
	stderr  *lockedWriter
	dataDir string
	// api reaches the process with the harness's helpers (login, dialWS,
	// do), which only use its URL.
	api *testServer
}

// startDev runs `switchboard dev --embedded` on addr and dataDir and waits
// until it serves. The environment names no Postgres or Redis.
func startDev(t *testing.T, addr, dataDir string) *devProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "REDIS_URL=") && !strings.HasPrefix(kv, "SWITCHBOARD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "SWITCHBOARD_TEST_MAIN=1",
		"SWITCHBOARD_TEST_ARGS=dev --embedded --addr "+addr+" --data-dir "+dataDir+" --shutdown-timeout 5s --log-level warn")
	stderr := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if out := stderr.String(); t.Failed() && out != "" {
			t.Logf("dev stderr:\n%s", out)
		}
	})
	base := "http://" + addr
	p := &devProc{cmd: cmd, stderr: stderr, dataDir: dataDir,
		api: &testServer{Server: &httptest.Server{URL: base}, api: &apitest.Client{URL: base}}}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "dev exited before serving: %s", stderr.String())
			p.out = append(p.out, line)
			if strings.HasPrefix(line, "Switchboard is running at http://localhost:") {
				go func() {
					for range lines {
					}
				}()
				return p
			}
		case <-timeout:
			t.Fatalf("dev not serving after 60 s; stdout %q, stderr:\n%s", p.out, stderr.String())
		}
	}
}

// postmaster is the embedded server's PID, from its lock file.
func (p *devProc) postmaster(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dataDir, "postgres", "postmaster.pid"))
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(first)
	require.NoError(t, err)
	return pid
}

// children lists the processes whose parent is pid (the postmaster's
// backends and helpers).
func children(t *testing.T, pid int) []int {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	require.NoError(t, err)
	var out []int
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if ppid, _ := strconv.Atoi(fields[1]); ppid == pid {
			child, _ := strconv.Atoi(strings.Fields(string(b))[0])
			out = append(out, child)
		}
	}
	return out
}

// waitGone waits up to 10 s until none of pids runs.
func waitGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []int
		for _, pid := range pids {
			if devpg.Alive(pid) {
				left = append(left, pid)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: processes %v still running", what, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sigterm stops the process and checks that it exits 0 and stops its
// PostgreSQL cleanly (the lock file goes).
func (p *devProc) sigterm(t *testing.T) {
	t.Helper()
	pg := p.postmaster(t)
	pids := append(children(t, pg), pg)
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.NoError(t, err, "dev must exit 0 on SIGTERM")
	case <-time.After(20 * time.Second):
		t.Fatal("dev still running 20 s after SIGTERM")
	}
	waitGone(t, "after SIGTERM", pids...)
	require.NoFileExists(t, filepath.Join(p.dataDir, "postgres", "postmaster.pid"))
}

// history is the bodies of a room's messages, oldest first.
func (p *devProc) history(t *testing.T, token, room string) []string {
	t.Helper()
	r := p.api.do(t, "GET", "/api/v1/rooms/"+room+"/messages?limit=100", token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	var bodies []string
	for _, m := range r.Body["messages"].([]any) {
		bodies = append(bodies, m.(map[string]any)["body"].(string))
	}
	return bodies
}

// TestDevEmbedded runs `switchboard dev --embedded` from an empty directory
// on ports of its own, so the machine's Postgres and Redis play no part: it
// comes up with a demo account, carries a register/login/send/receive round
// trip over WebSocket, keeps its messages over a restart, and leaves no
// PostgreSQL process behind after SIGTERM or after SIGKILL of itself; the
// lock file a killed run leaves does not stop the next, and dev stops when
// its PostgreSQL dies.
func TestDevEmbedded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// When the tests run as root, PostgreSQL runs as another account, which
	// must reach the data directory; t.TempDir's are 0700.
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	dataDir := filepath.Join(dir, "state")
	addr := freePort(t)

	p := startDev(t, addr, dataDir)
	out := strings.Join(p.out, "\n")
	require.Contains(t, out, "(embedded PostgreSQL ")
	require.Contains(t, out, "(embedded miniredis, dev only, in memory; --embedded)")
	require.Contains(t, out, fmt.Sprintf("sign in as %s / %s", demoUser, demoPassword))
	require.NotContains(t, out, ":5432/", "the machine's Postgres must not be used")
	require.NotContains(t, out, ":6379/", "the machine's Redis must not be used")

	// The demo account from the output; a newcomer through the real
	// register endpoint.
	demo := p.api.login(t, demoUser, demoPassword)
	r := p.api.do(t, "POST", "/api/v1/auth/register", "", map[string]any{"username": "newcomer", "password": "correct horse"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	newcomer := p.api.login(t, "newcomer", "correct horse")
	r = p.api.do(t, "GET", "/api/v1/rooms", demo.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	rooms := r.Body["rooms"].([]any)
	require.Len(t, rooms, 1)
	general := rooms[0].(map[string]any)
	require.Equal(t, demoRoom, general["name"])
	room := general["id"].(string)
	r = p.api.do(t, "POST", "/api/v1/rooms/"+room+"/join", newcomer.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)

	// Presence (Lua scripts) and delivery (pub/sub) through miniredis.
	watcher := p.api.subscribedClient(t, demo, 1)
	watcher.WithPresence = true
	sender := p.api.subscribedClient(t, newcomer, 1)
	ev := watcher.nextOf("presence")
	require.Equal(t, "online", ev["status"])
	sender.send(map[string]any{"type": "send", "id": "r1", "room": room, "body": "hello from dev", "client_id": "c-1"})
	require.Equal(t, "r1", sender.nextOf("ack", "message")["id"])
	got := watcher.nextOf("message")["message"].(map[string]any)
	require.Equal(t, "hello from dev", got["body"])
	require.Equal(t, "newcomer", got["sender"].(map[string]any)["username"])

	// Logout goes through the Redis denylist.
	r = p.api.do(t, "POST", "/api/v1/auth/logout", newcomer.Token, nil)
	require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Raw)
	r = p.api.do(t, "GET", "/api/v1/me", newcomer.Token, nil)
	require.Equal(t, http.StatusUnauthorized, r.Status, "a logged-out token must be refused")

	// The page may be opened as localhost or as 127.0.0.1.
	_, port, _ := net.SplitHostPort(addr)
	for _, origin := range []string{"http://localhost:" + port, "http://127.0.0.1:" + port} {
		c := p.api.dialWSWith(t, http.Header{"Origin": {origin}, "Authorization": {"Bearer " + demo.Token}})
		c.ready()
		c.Conn.CloseNow()
	}

	watcher.Conn.CloseNow()
	sender.Conn.CloseNow()
	p.sigterm(t)

	// A restart finds the cluster and the message; the demo account is not
	// made twice. Then SIGKILL: PostgreSQL must die with its parent.
	p = startDev(t, addr, dataDir)
	demo = p.api.login(t, demoUser, demoPassword)
	require.Equal(t, []string{"hello from dev"}, p.history(t, demo.Token, room))
	pg := p.postmaster(t)
	pids := append(children(t, pg), pg)
	require.Greater(t, len(pids), 1, "a running postmaster has helper processes")
	require.NoError(t, p.cmd.Process.Kill())
	err := p.cmd.Wait()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	waitGone(t, "after SIGKILL of dev", pids...)
	require.FileExists(t, filepath.Join(dataDir, "postgres", "postmaster.pid"), "a killed postmaster leaves its lock")

	p = startDev(t, addr, dataDir)
	demo = p.api.login(t, demoUser, demoPassword)
	require.Equal(t, []string{"hello from dev"}, p.history(t, demo.Token, room))

	// PostgreSQL dying under dev stops dev, with an error.
	require.NoError(t, syscall.Kill(p.postmaster(t), syscall.SIGKILL))
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		require.True(t, errors.As(err, &exit), "dev must fail when its postgres dies: %v", err)
		require.Contains(t, p.stderr.String(), "embedded postgres exited")
	case <-time.After(20 * time.Second):
		t.Fatal("dev still running 20 s after its postgres died")
	}
}

// TestDevPrivateDir runs `switchboard dev --embedded` with its data
// directory inside a directory of mode 0700, as `make run` in a checkout
// under /root does. Run as root, PostgreSQL runs as another account, which
// cannot enter it: the cluster goes to a directory of that account's own
// (in its home directory, else /var/tmp), linked from the data directory
// and named in the output; the server answers, and its data survives a
// restart.
func TestDevPrivateDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	dataDir := filepath.Join(dir, "state")
	addr := freePort(t)

	p := startDev(t, addr, dataDir)
	cluster, err := filepath.EvalSymlinks(filepath.Join(dataDir, "postgres"))
	require.NoError(t, err)
	if home := filepath.Dir(cluster); strings.HasPrefix(filepath.Base(home), "switchboard-dev-") {
		t.Cleanup(func() { _ = os.RemoveAll(home) })
	}
	out := strings.Join(p.out, "\n")
	t.Logf("dev says:\n%s", out)
	if os.Geteuid() == 0 {
		require.NotEqual(t, filepath.Join(dataDir, "postgres"), cluster, "the postgres account cannot enter the data directory")
		require.Contains(t, out, "data in "+cluster+", linked from "+filepath.Join(dataDir, "postgres"))
	}

	r := p.api.do(t, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	demo := p.api.login(t, demoUser, demoPassword)
	r = p.api.do(t, "GET", "/api/v1/rooms", demo.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	room := r.Body["rooms"].([]any)[0].(map[string]any)["id"].(string)
	r = p.api.do(t, "POST", "/api/v1/rooms/"+room+"/messages", demo.Token, map[string]any{"body": "kept in a private checkout"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	p.sigterm(t)

	p = startDev(t, addr, dataDir)
	demo = p.api.login(t, demoUser, demoPassword)
	require.Equal(t, []string{"kept in a private checkout"}, p.history(t, demo.Token, room))
	p.sigterm(t)
}

// TestDevPicksServices: dev uses what the environment or a flag names, else
// a server answering at the default address, else an embedded one, and
// --embedded wins over all.
func TestDevPicksServices(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	closed := "127.0.0.1:" + strings.Split(freePort(t), ":")[1] // nothing listens there now
	pgClosed := "postgres://postgres@" + closed + "/switchboard?sslmode=disable"
	redisClosed := "redis://" + closed + "/0"

	for _, c := range []struct {
		name     string
		named    bool
		force    bool
		def      string
		answers  func(context.Context, string) error
		embedded bool
	}{
		{"postgres answers at the default", false, false, storagetest.ServerURL(), postgresAnswers, false},
		{"redis answers at the default", false, false, brokertest.RedisURL(), redisAnswers, false},
		{"no postgres at the default", false, false, pgClosed, postgresAnswers, true},
		{"no redis at the default", false, false, redisClosed, redisAnswers, true},
		{"postgres named", true, false, pgClosed, postgresAnswers, false},
		{"redis named", true, false, redisClosed, redisAnswers, false},
		{"postgres forced", true, true, storagetest.ServerURL(), postgresAnswers, true},
		{"redis forced", false, true, brokertest.RedisURL(), redisAnswers, true},
	} {
		got := pick(ctx, c.named, c.force, c.def, c.answers)
		require.Equal(t, c.embedded, got.embedded, "%s: %s", c.name, got.why)
	}
	got := pick(ctx, false, false, pgClosed, postgresAnswers)
	require.Contains(t, got.why, closed, "the output says where nothing answered")
}
