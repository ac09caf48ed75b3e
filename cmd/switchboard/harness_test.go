package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
	"github.com/switchboard-chat/switchboard/ratelimit"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// testSecret is the JWT key of every test node.
var testSecret = []byte("test-secret-test-secret-test-secret!")

// testServer is one node on its own database behind httptest.
type testServer struct {
	*httptest.Server
	node     *node
	prefix   string // of its Redis keys and job queues
	database string // its DATABASE_URL
	stop     func() // shuts the node down; safe to call more than once
}

// newTestServer starts a node on a fresh database. tune may adjust its hub.
func newTestServer(t testing.TB, tune func(*hub.Config)) *testServer {
	t.Helper()
	return newTestServerWith(t, nodeOptions{tune: tune})
}

// newTestServerOn starts a node on an existing database (several nodes may
// share one; give them one redisPrefix too with newTestServerWith or
// newTestCluster to make them a cluster).
func newTestServerOn(t testing.TB, databaseURL string, tune func(*hub.Config)) *testServer {
	t.Helper()
	return newTestServerWith(t, nodeOptions{databaseURL: databaseURL, tune: tune})
}

// nodeOptions place a test node. The zero value is a node alone on a fresh
// database and the test Redis.
type nodeOptions struct {
	databaseURL string // "" means a fresh database
	redisURL    string // "" means the test Redis
	// redisPrefix; "" means one no other test server uses, so that parallel
	// tests never see each other's events. Nodes of one cluster share one.
	redisPrefix string
	// httpLimit is the per-user HTTP write limit; the zero value means
	// 1000/s with a burst of 1000, high enough that tests of other things
	// never meet it.
	httpLimit ratelimit.Limit
	// authRateLimit is SWITCHBOARD_AUTH_RATE_LIMIT; zero turns it off, so
	// that tests of other things may log in as often as they like.
	authRateLimit  int
	trustedProxies string
	accessTTL      time.Duration // zero: 15 minutes
	tune           func(*hub.Config)
	// twilio and slack, when set, turn the integration on against the
	// fake; the node then runs job workers unless noWorkers.
	twilio    *twiliotest.API
	slack     *slacktest.API
	noWorkers bool
	// addr is the listen address; "" means a free loopback port. With an
	// address, the node's public URL is http://addr, so that a browser
	// loading the client from it passes the WebSocket Origin check, and a
	// node stopped with stop can be replaced by one on the same address.
	addr string
}

// Credentials of the integrations in tests.
const (
	testTwilioFrom    = "+15005550006"
	testSlackSecret   = "8f742231b10e8888abcd99yyyzzz85a5"
	testSlackBotToken = "xoxb-test-token"
)

// newTestServerWith starts a node behind httptest as opts say.
func newTestServerWith(t testing.TB, opts nodeOptions) *testServer {
	t.Helper()
	if opts.databaseURL == "" {
		opts.databaseURL = storagetest.NewDatabase(t)
	}
	public := "http://switchboard.test"
	if opts.addr != "" {
		public = "http://" + opts.addr
	}
	cfg := &config{
		DatabaseURL: opts.databaseURL,
		RedisURL:    cmp.Or(opts.redisURL, brokertest.RedisURL()),
		RedisPrefix: cmp.Or(opts.redisPrefix, brokertest.Prefix()),
		Addr:        "127.0.0.1:0",
		PublicURL:   public,
		RateLimit:   10,
		RateBurst:   20,
		tuneHub:     opts.tune,
	}
	cfg.HTTPRateLimit, cfg.HTTPRateBurst = 1000, 1000
	cfg.AuthRateLimit, cfg.TrustedProxies, cfg.AccessTTL = opts.authRateLimit, opts.trustedProxies, opts.accessTTL
	if opts.httpLimit != (ratelimit.Limit{}) {
		cfg.HTTPRateLimit, cfg.HTTPRateBurst = opts.httpLimit.Rate, opts.httpLimit.Burst
	}
	if opts.twilio != nil {
		cfg.Twilio = twilio.SenderConfig{AccountSID: opts.twilio.AccountSID, AuthToken: opts.twilio.AuthToken,
			From: testTwilioFrom, APIURL: opts.twilio.URL()}
	}
	if opts.slack != nil {
		cfg.Slack = slackConfig{SigningSecret: testSlackSecret, BotToken: opts.slack.Token, APIURL: opts.slack.URL()}
	}
	cfg.NoWorkers = opts.noWorkers
	cfg.smsGap = time.Second
	cfg.tuneJobs = func(c *jobs.Config) {
		c.RetryBase, c.RetryMax = 20*time.Millisecond, 200*time.Millisecond
		c.PollInterval, c.BreakerTimeout = 50*time.Millisecond, 500*time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := newNode(context.Background(), cfg, testSecret, log)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(n.handler)
	if opts.addr != "" {
		ln, err := net.Listen("tcp", opts.addr)
		require.NoError(t, err)
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	stopWorkers := n.startWorkers(cfg, log)
	stop := sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = n.shutdown(ctx)
		srv.Close()
		stopWorkers()
		in := asynq.NewInspectorFromRedisClient(n.rdb)
		for _, q := range n.queue.Queues() {
			_ = in.DeleteQueue(q, true)
		}
		// DeleteQueue leaves completed tasks and counters behind.
		_ = brokertest.DeleteKeys(ctx, n.rdb, "asynq:{"+cfg.RedisPrefix+"*")
		n.rdb.Del(ctx, cfg.RedisPrefix+"breakers")
		n.close()
	})
	t.Cleanup(stop)
	// At the test's end, not at stop: nodes of a cluster test share the
	// prefix, and a node may stop and start again meanwhile.
	t.Cleanup(func() { n.rdb.Del(context.Background(), cfg.RedisPrefix+"versions") })
	return &testServer{Server: srv, node: n, stop: stop, prefix: cfg.RedisPrefix, database: cfg.DatabaseURL}
}

// apiResponse is a decoded HTTP answer.
type apiResponse struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// errorCode is the error.code of an error answer, or "".
func (r apiResponse) errorCode() string {
	e, _ := r.Body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// do sends a request with an optional JSON body and Bearer token.
func (s *testServer) do(t testing.TB, method, path, token string, body any) apiResponse {
	t.Helper()
	return doURL(t, method, s.URL+path, token, body)
}

// doFrom is do with extra request headers (X-Forwarded-For, say).
func (s *testServer) doFrom(t testing.TB, header http.Header, method, path, token string, body any) apiResponse {
	t.Helper()
	return doRequest(t, header, method, s.URL+path, token, body)
}

// doURL is do against any server.
func doURL(t testing.TB, method, url, token string, body any) apiResponse {
	t.Helper()
	return doRequest(t, nil, method, url, token, body)
}

func doRequest(t testing.TB, header http.Header, method, url, token string, body any) apiResponse {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := apiResponse{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(raw, &out.Body), "body: %s", raw)
	}
	return out
}

// testUser is a registered account.
type testUser struct {
	ID, Username, Token, Refresh string
}

var userSeq atomic.Int64

// fixturePassword is the password of every account register makes.
const fixturePassword = "fixture password"

// fixtureHash is fixturePassword hashed at bcrypt's lowest cost. The real
// register endpoint hashes at the production cost, about 1-2 s of CPU under
// -race on these machines; so test accounts are inserted with this hash and
// logged in over HTTP, and only the register tests pay the real cost.
var fixtureHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(fixturePassword), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

// register makes an account with a unique name starting with prefix and
// logs it in through POST /api/v1/auth/login.
func (s *testServer) register(t testing.TB, prefix string) testUser {
	t.Helper()
	return s.registerNamed(t, fmt.Sprintf("%s%d", prefix, userSeq.Add(1)))
}

// registerNamed makes the account name (which must be free) and logs it in.
func (s *testServer) registerNamed(t testing.TB, name string) testUser {
	t.Helper()
	_, err := s.node.pool.Exec(t.Context(),
		`INSERT INTO users (username, password_hash, display_name) VALUES ($1, $2, $1)`, name, fixtureHash())
	require.NoError(t, err)
	return s.login(t, name, fixturePassword)
}

// login logs in and returns the account with its fresh token pair.
func (s *testServer) login(t testing.TB, username, password string) testUser {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": username, "password": password})
	require.Equal(t, http.StatusOK, r.Status, "login: %s", r.Raw)
	user := r.Body["user"].(map[string]any)
	return testUser{ID: user["id"].(string), Username: user["username"].(string),
		Token: r.Body["access_token"].(string), Refresh: r.Body["refresh_token"].(string)}
}

var roomSeq atomic.Int64

// createRoom makes a room owned by u and returns its id.
func (s *testServer) createRoom(t testing.TB, u testUser, visibility string) string {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/rooms", u.Token, map[string]any{
		"name": fmt.Sprintf("room-%d", roomSeq.Add(1)), "visibility": visibility})
	require.Equal(t, http.StatusCreated, r.Status, "create room: %s", r.Raw)
	return r.Body["id"].(string)
}

// addMember adds u to room on behalf of owner.
func (s *testServer) addMember(t testing.TB, owner testUser, room string, u testUser) {
	t.Helper()
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/members", owner.Token, map[string]any{"username": u.Username})
	require.Equal(t, http.StatusOK, r.Status, "add member: %s", r.Raw)
}

// wsClient is a test WebSocket client that splits batched frames into
// objects.
type wsClient struct {
	t       testing.TB
	ws      *websocket.Conn
	pending []map[string]any
	// withPresence keeps presence events; other tests never see them, so
	// that who else happens to connect does not change what they read.
	withPresence bool
}

// dialWS connects with the token in the Authorization header.
func (s *testServer) dialWS(t testing.TB, token string) *wsClient {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return s.dialWSWith(t, h)
}

func (s *testServer) dialWSWith(t testing.TB, h http.Header) *wsClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{hub.Subprotocol}})
	require.NoError(t, err)
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	return &wsClient{t: t, ws: ws}
}

// send writes one JSON frame.
func (c *wsClient) send(v any) {
	c.t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(c.t, err)
	c.sendRaw(raw)
}

func (c *wsClient) sendRaw(raw []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(c.t, c.ws.Write(ctx, websocket.MessageText, raw))
}

// next returns the next server object, waiting up to 10 s.
func (c *wsClient) next() map[string]any {
	c.t.Helper()
	obj, err := c.nextErr(10 * time.Second)
	require.NoError(c.t, err)
	return obj
}

func (c *wsClient) nextErr(wait time.Duration) (map[string]any, error) {
	for len(c.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		typ, data, err := c.ws.Read(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			return nil, fmt.Errorf("server sent a binary frame")
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				return nil, fmt.Errorf("server object %q: %w", line, err)
			}
			if obj["type"] == "presence" && !c.withPresence {
				continue
			}
			c.pending = append(c.pending, obj)
		}
	}
	obj := c.pending[0]
	c.pending = c.pending[1:]
	return obj, nil
}

// nextOf returns the next object of type typ, skipping others of the types
// in skip; any other type fails the test.
func (c *wsClient) nextOf(typ string, skip ...string) map[string]any {
	c.t.Helper()
	for {
		obj := c.next()
		if obj["type"] == typ {
			return obj
		}
		require.Contains(c.t, skip, obj["type"], "waiting for %s, got %v", typ, obj)
	}
}

// ready reads until the ready frame.
func (c *wsClient) ready() map[string]any {
	c.t.Helper()
	return c.nextOf("ready")
}

// messageSeq returns the seq of a message frame.
func messageSeq(obj map[string]any) int64 {
	m := obj["message"].(map[string]any)
	return int64(m["seq"].(float64))
}

// closeStatus waits for the server to close the connection and returns
// the close code.
func (c *wsClient) closeStatus(wait time.Duration) websocket.StatusCode {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		_, err := c.nextErr(time.Until(deadline))
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
	c.t.Fatalf("connection still open after %s", wait)
	return -1
}
