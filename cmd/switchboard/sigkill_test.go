package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// serveProc is one `switchboard serve` child process of a cluster.
type serveProc struct {
	cmd  *exec.Cmd
	addr string
	dead atomic.Bool
}

// startServe runs the test binary as `switchboard serve` on db and prefix and
// waits until it listens. The process is killed at cleanup.
func startServe(t *testing.T, db, prefix string) *serveProc {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SWITCHBOARD_TEST_MAIN=1",
		"SWITCHBOARD_TEST_ARGS=serve --addr "+addr+" --shutdown-timeout 2s",
		"DATABASE_URL="+db, "SWITCHBOARD_JWT_SECRET="+string(apitest.Secret),
		"SWITCHBOARD_REDIS_PREFIX="+prefix,
		"SWITCHBOARD_HTTP_RATE_LIMIT=100000", "SWITCHBOARD_HTTP_RATE_BURST=100000",
		"SWITCHBOARD_RATE_LIMIT=100000", "SWITCHBOARD_RATE_BURST=100000",
		"SWITCHBOARD_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, brokertest.Current().Env()...)
	stderr := &lockedWriter{w: &bytes.Buffer{}}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &serveProc{cmd: cmd, addr: addr}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if out := stderr.String(); t.Failed() && out != "" {
			t.Logf("node %s stderr:\n%s", addr, out)
		}
	})
	r := bufio.NewReader(stdout)
	line, err := r.ReadString('\n')
	require.NoError(t, err, "node %s did not start: %s", addr, stderr.String())
	require.Contains(t, line, "Switchboard is running at http://localhost:")
	go func() { _, _ = io.Copy(io.Discard, r) }()
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

// killClient is one user of TestClusterSIGKILL: it sends, reads everything,
// and reconnects to a live node with its last seqs whenever its connection
// dies.
type killClient struct {
	t     *testing.T
	idx   int
	user  testUser
	rooms []string
	nodes []*serveProc
	node  int // index of the node it is connected to

	seen     map[string][]int64  // room -> every seq received, in order
	acked    map[string]string   // client_id -> room
	ackedIDs map[string][]string // client_id -> message ids of its acks
	sent     int
	reconns  int
}

func (c *killClient) lastSeqs() map[string]int64 {
	out := map[string]int64{}
	for _, r := range c.rooms {
		if s := c.seen[r]; len(s) > 0 {
			out[r] = s[len(s)-1]
		}
	}
	return out
}

// connect dials a live node, starting with the current one, authenticates by
// first frame with the resume seqs and waits for ready. It returns a channel
// of the server's objects; the channel is closed when the connection dies.
func (c *killClient) connect(ctx context.Context, resume bool) (*websocket.Conn, <-chan map[string]any, error) {
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if attempt > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if c.nodes[c.node].dead.Load() || attempt > 0 {
			c.node = (c.node + 1) % len(c.nodes)
			if c.nodes[c.node].dead.Load() {
				continue
			}
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ws, _, err := websocket.Dial(dctx, "ws://"+c.nodes[c.node].addr+"/ws",
			&websocket.DialOptions{Subprotocols: []string{hub.Subprotocol}})
		if err != nil {
			cancel()
			continue
		}
		ws.SetReadLimit(-1)
		auth := map[string]any{"type": "auth", "token": c.user.Token}
		if resume {
			auth["resume"] = c.lastSeqs()
		}
		raw, _ := json.Marshal(auth)
		if err := ws.Write(dctx, websocket.MessageText, raw); err != nil {
			cancel()
			ws.CloseNow()
			continue
		}
		cancel()
		in := make(chan map[string]any, 1024)
		go func() {
			defer close(in)
			for {
				typ, data, err := ws.Read(ctx)
				if err != nil {
					return
				}
				if typ != websocket.MessageText {
					return
				}
				for _, line := range bytes.Split(data, []byte("\n")) {
					var obj map[string]any
					if json.Unmarshal(line, &obj) != nil {
						return
					}
					select {
					case in <- obj:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
		return ws, in, nil
	}
}

// run is the client's life: send until sendUntil, then wait for targets and
// read until every room's last seq is seen.
func (c *killClient) run(ctx context.Context, sendUntil time.Time, sendDone *sync.WaitGroup,
	targetsReady <-chan struct{}, targets map[string]int64) error {
	c.seen = map[string][]int64{}
	c.acked = map[string]string{}
	c.ackedIDs = map[string][]string{}
	type pendingSend struct{ id, room, body string }
	var inflight *pendingSend
	sending := true
	defer func() {
		if sending {
			sendDone.Done()
		}
	}()
	n := 0
	ws, in, err := c.connect(ctx, false)
	if err != nil {
		return err
	}
	defer func() { ws.CloseNow() }()
	isReady := false
	write := func(v any) {
		raw, _ := json.Marshal(v)
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_ = ws.Write(wctx, websocket.MessageText, raw) // a failure shows on the read side
	}
	sendNext := func() {
		if inflight == nil {
			if time.Now().After(sendUntil) {
				sending = false
				sendDone.Done()
				return
			}
			n++
			room := c.rooms[n%len(c.rooms)]
			inflight = &pendingSend{id: fmt.Sprintf("c%d-%d", c.idx, n), room: room,
				body: fmt.Sprintf("client %d message %d", c.idx, n)}
		}
		c.sent++
		write(map[string]any{"type": "send", "id": inflight.id, "room": inflight.room,
			"body": inflight.body, "client_id": inflight.id})
	}
	final := targetsReady
	done := func() bool {
		select {
		case <-final:
		default:
			return false
		}
		for _, r := range c.rooms {
			s := c.seen[r]
			if targets[r] > 0 && (len(s) == 0 || s[len(s)-1] < targets[r]) {
				return false
			}
		}
		return true
	}
	pace := time.NewTicker(25 * time.Millisecond)
	defer pace.Stop()
	for {
		if !sending && done() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("client %d: %w (last seqs %v, targets ready %v, sending %v)",
				c.idx, ctx.Err(), c.lastSeqs(), targets, sending)
		case <-targetsReady:
			targetsReady = nil // done() still sees it closed through final
		case <-pace.C:
			if isReady && sending && inflight == nil {
				sendNext()
			}
		case obj, ok := <-in:
			if !ok {
				// The connection died: reconnect with the last seqs and
				// retry the unacked send under the same client_id.
				ws.CloseNow()
				c.reconns++
				isReady = false
				ws, in, err = c.connect(ctx, true)
				if err != nil {
					return fmt.Errorf("client %d reconnect: %w", c.idx, err)
				}
				continue
			}
			switch obj["type"] {
			case "ready":
				isReady = true
				if sending && inflight != nil {
					sendNext()
				}
			case "ack":
				m, _ := obj["message"].(map[string]any)
				if inflight == nil || obj["id"] != inflight.id || m == nil {
					return fmt.Errorf("client %d: unexpected ack %v", c.idx, obj)
				}
				if cid, _ := m["client_id"].(string); cid != inflight.id {
					return fmt.Errorf("client %d: ack of %s carries client_id %v", c.idx, inflight.id, m["client_id"])
				}
				c.acked[inflight.id] = inflight.room
				c.ackedIDs[inflight.id] = append(c.ackedIDs[inflight.id], m["id"].(string))
				inflight = nil
			case "message":
				m := obj["message"].(map[string]any)
				room := m["room_id"].(string)
				c.seen[room] = append(c.seen[room], int64(m["seq"].(float64)))
			case "error":
				if obj["code"] == string(chat.CodeUnavailable) {
					continue // the node is going away; the read side will see it
				}
				if inflight != nil && obj["id"] == inflight.id && obj["code"] == "rate_limited" {
					time.Sleep(50 * time.Millisecond)
					sendNext()
					continue
				}
				return fmt.Errorf("client %d: error %v", c.idx, obj)
			}
		}
	}
}

// TestClusterSIGKILL kills one of three serve processes with SIGKILL while 20
// clients send and receive in two rooms. The clients of the dead node
// reconnect elsewhere with their last seqs and retry unacked sends by
// client_id; in the end every client has seen every room's seqs 1..last
// exactly once and in order, and every acked client_id is stored once.
func TestClusterSIGKILL(t *testing.T) {
	t.Parallel()
	const numClients, numNodes, victim = 20, 3, 1
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	nodes := make([]*serveProc, numNodes)
	var wg sync.WaitGroup
	for i := range nodes {
		nodes[i] = startServe(t, db, prefix)
	}
	base := func(i int) string { return "http://" + nodes[i].addr }

	conn, err := pgx.Connect(ctx, db)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	users := make([]testUser, numClients)
	for i := range users {
		name := fmt.Sprintf("kill%d", apitest.Seq())
		_, err := conn.Exec(ctx, `INSERT INTO users (username, password_hash, display_name) VALUES ($1, $2, $1)`, name, apitest.PasswordHash())
		require.NoError(t, err)
		r := apitest.Do(t, nil, "POST", base(i%numNodes)+"/api/v1/auth/login", "", map[string]any{"username": name, "password": fixturePassword})
		require.Equal(t, http.StatusOK, r.Status, "login: %s", r.Raw)
		u := r.Body["user"].(map[string]any)
		users[i] = testUser{ID: u["id"].(string), Username: name, Token: r.Body["access_token"].(string)}
	}
	rooms := make([]string, 2)
	for i := range rooms {
		r := apitest.Do(t, nil, "POST", base(0)+"/api/v1/rooms", users[0].Token, map[string]any{
			"name": fmt.Sprintf("kill-%d", apitest.Seq()), "visibility": chat.Private})
		require.Equal(t, http.StatusCreated, r.Status, "create room: %s", r.Raw)
		rooms[i] = r.Body["id"].(string)
		for _, u := range users[1:] {
			r := apitest.Do(t, nil, "POST", base(0)+"/api/v1/rooms/"+rooms[i]+"/members", users[0].Token, map[string]any{"username": u.Username})
			require.Equal(t, http.StatusOK, r.Status, "add member: %s", r.Raw)
		}
	}

	clients := make([]*killClient, numClients)
	start := time.Now()
	sendUntil := start.Add(3 * time.Second)
	var sendDone sync.WaitGroup
	targetsReady := make(chan struct{})
	targets := map[string]int64{}
	errs := make(chan error, numClients)
	for i := range clients {
		c := &killClient{t: t, idx: i, user: users[i], rooms: rooms, nodes: nodes, node: i % numNodes}
		clients[i] = c
		sendDone.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- c.run(ctx, sendUntil, &sendDone, targetsReady, targets)
		}()
	}

	// SIGKILL one node in the middle of the traffic.
	time.Sleep(time.Until(start.Add(1500 * time.Millisecond)))
	nodes[victim].dead.Store(true)
	require.NoError(t, nodes[victim].cmd.Process.Kill())
	t.Logf("killed node %d at %s", victim, time.Since(start))

	// Once every client has stopped sending (every send acked), the rooms'
	// last seqs are final: ask a live node.
	sendStopped := make(chan struct{})
	go func() { sendDone.Wait(); close(sendStopped) }()
	select {
	case <-sendStopped:
	case <-ctx.Done():
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		t.Fatal("clients did not finish sending in time")
	}
	r := apitest.Do(t, nil, "GET", base(0)+"/api/v1/rooms", users[0].Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	for _, x := range r.Body["rooms"].([]any) {
		room := x.(map[string]any)
		targets[room["id"].(string)] = int64(room["last_seq"].(float64))
	}
	close(targetsReady)
	t.Logf("sending stopped at %s; last seqs %v", time.Since(start), targets)

	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}

	// The checker: every client saw 1..last of each room exactly once, in
	// order.
	totalSent, totalAcked, reconns := 0, 0, 0
	acked := map[string]string{} // "user/client_id" -> room
	for _, c := range clients {
		totalSent += c.sent
		totalAcked += len(c.acked)
		reconns += c.reconns
		for _, room := range rooms {
			seqs := c.seen[room]
			require.NotZero(t, targets[room])
			ok := int64(len(seqs)) == targets[room]
			for i, s := range seqs {
				if s != int64(i+1) {
					ok = false
				}
			}
			if !ok {
				t.Errorf("client %d (reconnects %d) room %s: want seqs 1..%d once in order, got %s",
					c.idx, c.reconns, room, targets[room], describeSeqs(seqs))
			}
		}
		for cid, room := range c.acked {
			acked[c.user.ID+"/"+cid] = room
			if ids := c.ackedIDs[cid]; len(ids) != 1 {
				t.Errorf("client %d: client_id %s acked %d times: %v", c.idx, cid, len(ids), ids)
			}
		}
	}
	t.Logf("%d sends (with retries), %d acked, %d reconnects", totalSent, totalAcked, reconns)
	require.Greater(t, reconns, 0, "no client was on the killed node")

	// Every acked client_id is stored exactly once, and nothing else is.
	rows, err := conn.Query(ctx, `SELECT room_id::text, sender_id::text, client_id, count(*) FROM messages GROUP BY 1, 2, 3`)
	require.NoError(t, err)
	stored := map[string]int{}
	storedPerRoom := map[string]int64{}
	for rows.Next() {
		var room, sender string
		var cid *string
		var count int
		require.NoError(t, rows.Scan(&room, &sender, &cid, &count))
		require.NotNil(t, cid, "a message without client_id in room %s", room)
		stored[sender+"/"+*cid] = count
		storedPerRoom[room] += int64(count)
	}
	require.NoError(t, rows.Err())
	for key, room := range acked {
		if stored[key] != 1 {
			t.Errorf("acked %s in room %s is stored %d times", key, room, stored[key])
		}
	}
	for key, count := range stored {
		if count != 1 {
			t.Errorf("client_id %s is stored %d times", key, count)
		}
	}
	for _, room := range rooms {
		require.Equal(t, targets[room], storedPerRoom[room], "room %s: stored messages vs last_seq", room)
	}
}

// describeSeqs summarises a seq list: its length and the first gap, repeat or
// disorder.
func describeSeqs(seqs []int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d seqs", len(seqs))
	for i, s := range seqs {
		if s != int64(i+1) {
			lo := max(0, i-3)
			hi := min(len(seqs), i+4)
			fmt.Fprintf(&b, ", first wrong at index %d: ...%v...", i, seqs[lo:hi])
			break
		}
	}
	return b.String()
}
