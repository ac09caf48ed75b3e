package main

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/ratelimit"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// testServer is one node on its own database behind httptest.
type testServer struct {
	*httptest.Server
	api      *apitest.Client // makes fixtures through this node
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
	// redis is the topology when redisURL is ""; nil means the one the
	// environment names (brokertest.Current).
	redis *brokertest.Topology
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
	// denylistRebuild is how often ended sessions are written to Redis
	// again; zero: 30 s.
	denylistRebuild time.Duration
	tune            func(*hub.Config)
	// tuneJobs adjusts the job queue after the harness's own settings.
	tuneJobs func(*jobs.Config)
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
	if opts.redisURL != "" {
		brokertest.RequireSingle(t)
	}
	topology := brokertest.Current()
	if opts.redis != nil {
		topology = *opts.redis
	}
	cfg := &config{
		DatabaseURL:    opts.databaseURL,
		RedisURL:       cmp.Or(opts.redisURL, brokertest.RedisURL()),
		RedisCluster:   strings.Join(topology.ClusterAddrs, ","),
		RedisSentinels: strings.Join(topology.SentinelAddrs, ","),
		RedisMaster:    topology.SentinelMaster,
		RedisPrefix:    cmp.Or(opts.redisPrefix, brokertest.Prefix()),
		Addr:           "127.0.0.1:0",
		PublicURL:      public,
		RateLimit:      10,
		RateBurst:      20,
		tuneHub:        opts.tune,
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
	cfg.denylistRebuild = opts.denylistRebuild
	cfg.smsGap = time.Second
	cfg.tuneJobs = func(c *jobs.Config) {
		c.RetryBase, c.RetryMax = 20*time.Millisecond, 200*time.Millisecond
		c.PollInterval, c.BreakerTimeout = 50*time.Millisecond, 500*time.Millisecond
		if opts.tuneJobs != nil {
			opts.tuneJobs(c)
		}
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := newNode(context.Background(), cfg, apitest.Secret, log)
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
		n.rdb.Del(ctx, cfg.RedisPrefix+"breakers", cfg.RedisPrefix+"jobs-epoch")
		n.close()
	})
	t.Cleanup(stop)
	// At the test's end, not at stop: nodes of a cluster test share the
	// prefix, and a node may stop and start again meanwhile.
	t.Cleanup(func() { n.rdb.Del(context.Background(), cfg.RedisPrefix+"versions") })
	return &testServer{Server: srv, api: &apitest.Client{URL: srv.URL, Pool: n.pool}, node: n, stop: stop,
		prefix: cfg.RedisPrefix, database: cfg.DatabaseURL}
}

// cmd's tests make their fixtures with internal/apitest, through the
// node's apitest.Client, and call them by the short names below; the code
// is apitest's.
type (
	testUser    = apitest.User
	apiResponse = apitest.Response
	apiProfile  = apitest.Profile
)

// fixturePassword is the password of every account register makes.
const fixturePassword = apitest.Password

// requireAPIError checks an error answer's status, code and shape.
var requireAPIError = apitest.RequireError

// decodeBody decodes the raw body of r into a T.
func decodeBody[T any](t *testing.T, r apiResponse) T {
	t.Helper()
	return apitest.Decode[T](t, r)
}

// do sends a request with an optional JSON body and Bearer token.
func (s *testServer) do(t testing.TB, method, path, token string, body any) apiResponse {
	t.Helper()
	return s.api.Do(t, method, path, token, body)
}

// doFrom is do with extra request headers (X-Forwarded-For, say).
func (s *testServer) doFrom(t testing.TB, header http.Header, method, path, token string, body any) apiResponse {
	t.Helper()
	return s.api.DoFrom(t, header, method, path, token, body)
}

// register makes an account with a unique name starting with prefix and
// logs it in.
func (s *testServer) register(t testing.TB, prefix string) testUser {
	t.Helper()
	return s.api.Register(t, prefix)
}

// registerNamed makes the account name (which must be free) and logs it in.
func (s *testServer) registerNamed(t testing.TB, name string) testUser {
	t.Helper()
	return s.api.RegisterNamed(t, name)
}

// login logs in and returns the account with its fresh token pair.
func (s *testServer) login(t testing.TB, username, password string) testUser {
	t.Helper()
	return s.api.Login(t, username, password)
}

// refresh is POST /api/v1/auth/refresh with u's refresh token.
func (s *testServer) refresh(t testing.TB, u testUser) apiResponse {
	t.Helper()
	return s.api.Refresh(t, u)
}

// createRoom makes a room owned by u and returns its id.
func (s *testServer) createRoom(t testing.TB, u testUser, visibility string) string {
	t.Helper()
	return s.api.CreateRoom(t, u, visibility)
}

// addMember adds u to room on behalf of owner.
func (s *testServer) addMember(t testing.TB, owner testUser, room string, u testUser) {
	t.Helper()
	s.api.AddMember(t, owner, room, u)
}

// wsClient is apitest's WebSocket client with cmd's method names.
type wsClient struct {
	*apitest.WS
	t testing.TB
}

// dialWS connects with the token in the Authorization header.
func (s *testServer) dialWS(t testing.TB, token string) *wsClient {
	t.Helper()
	return &wsClient{s.api.DialWS(t, token), t}
}

// dialWSWith connects with the given request headers.
func (s *testServer) dialWSWith(t testing.TB, h http.Header) *wsClient {
	t.Helper()
	return &wsClient{s.api.DialWSWith(t, h), t}
}

// subscribedClient dials s as u and waits until it is subscribed to its
// rooms (one subscribed frame per room).
func (s *testServer) subscribedClient(t testing.TB, u testUser, rooms int) *wsClient {
	t.Helper()
	return &wsClient{s.api.SubscribedClient(t, u, rooms), t}
}

// The methods below are apitest.WS's, under cmd's names.

func (c *wsClient) send(v any) {
	c.t.Helper()
	c.Send(v)
}

func (c *wsClient) next() map[string]any {
	c.t.Helper()
	return c.Next()
}

func (c *wsClient) nextErr(wait time.Duration) (map[string]any, error) { return c.NextErr(wait) }

func (c *wsClient) nextOf(typ string, skip ...string) map[string]any {
	c.t.Helper()
	return c.NextOf(typ, skip...)
}

func (c *wsClient) ready() map[string]any {
	c.t.Helper()
	return c.Ready()
}

func (c *wsClient) closeStatus(wait time.Duration) websocket.StatusCode {
	c.t.Helper()
	return c.CloseStatus(wait)
}

// messageSeq returns the seq of a message frame.
var messageSeq = apitest.MessageSeq

// expectMessages reads message frames for room until it has seqs from..to,
// failing on any gap, repeat or disorder.
func expectMessages(t *testing.T, c *wsClient, room string, from, to int64) []map[string]any {
	t.Helper()
	return apitest.ExpectMessages(t, c.WS, room, from, to)
}

// drainUntilClosed reads until the server ends the connection and returns
// the objects read on the way and the close code (-1: no close frame).
func drainUntilClosed(t *testing.T, c *wsClient, wait time.Duration) ([]map[string]any, websocket.StatusCode) {
	t.Helper()
	return apitest.DrainUntilClosed(t, c.WS, wait)
}
