package main

import (
	"bufio"
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// TestMain lets a test start this binary as `switchboard serve`: with
// SWITCHBOARD_TEST_MAIN set, the test binary runs main instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("SWITCHBOARD_TEST_MAIN") == "1" {
		os.Args = append([]string{"switchboard"}, strings.Fields(os.Getenv("SWITCHBOARD_TEST_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freePort returns a loopback address nothing listens on, for a child
// process to bind. It picks below Linux's ephemeral range (32768 and up):
// a port the kernel handed out for :0 is handed out again to outgoing
// connections (pools, load tests running beside) and was once taken
// between this check and the child's bind.
func freePort(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+mrand.IntN(22000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port below 32000")
	return ""
}

// TestServeSIGTERM runs the real serve command in a child process on a
// database it has to create, and checks a SIGTERM: the open WebSocket is told
// and closed with 1001, and the process exits 0 within the grace period.
func TestServeSIGTERM(t *testing.T) {
	t.Parallel()
	// A database name that does not exist yet: serve must create it.
	url := storagetest.NewDatabase(t)
	fresh := strings.Replace(url, "/sbtest_", "/sbfresh_", 1)
	t.Cleanup(func() { dropDatabase(t, fresh) })

	addr := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_MAIN=1",
		"SWITCHBOARD_TEST_ARGS=serve --addr "+addr+" --shutdown-timeout 5s",
		"DATABASE_URL="+fresh, "SWITCHBOARD_JWT_SECRET="+string(apitest.Secret))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, line, "Switchboard is running at http://localhost:")

	base := "http://" + addr
	name := fmt.Sprintf("sig%d", apitest.Seq())
	r := apitest.Do(t, nil, "POST", base+"/api/v1/auth/register", "", map[string]any{"username": name, "password": "correct horse"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	token := r.Body["access_token"].(string)
	r = apitest.Do(t, nil, "POST", base+"/api/v1/rooms", token, map[string]any{"name": fmt.Sprintf("sig-%d", apitest.Seq())})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)

	c := &wsClient{apitest.Dial(t, "ws://"+addr+"/ws", http.Header{"Authorization": {"Bearer " + token}}), t}
	c.ready()

	start := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	notice := c.nextOf("error", "subscribed")
	require.Equal(t, string(chat.CodeUnavailable), notice["code"])
	require.Equal(t, websocket.StatusGoingAway, c.closeStatus(5*time.Second))
	require.NoError(t, cmd.Wait(), "serve must exit 0")
	require.Less(t, time.Since(start), 5*time.Second)
}

func dropDatabase(t *testing.T, url string) {
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	conn, err := pgx.Connect(context.Background(), storagetest.ServerURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)")
	require.NoError(t, err)
}
