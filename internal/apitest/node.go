package apitest

import (
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/cache"
	"github.com/switchboard-chat/switchboard/clientip"
	"github.com/switchboard-chat/switchboard/denylist"
	"github.com/switchboard-chat/switchboard/history"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/poster"
	"github.com/switchboard-chat/switchboard/presence"
	"github.com/switchboard-chat/switchboard/ratelimit"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
	"github.com/switchboard-chat/switchboard/web"
)

// publicURL is a test node's public URL: the one Origin its WebSocket
// endpoint allows.
const publicURL = "http://switchboard.test"

// Options adjust a Node. The zero value is a node whose abuse limits tests
// of other things never meet.
type Options struct {
	// HTTPLimit is the per-user limit of HTTP writes; zero means 1000/s
	// with a burst of 1000.
	HTTPLimit ratelimit.Limit
	// AuthRateLimit is the per-IP limit of logins, registers and refreshes
	// per minute; zero turns it off.
	AuthRateLimit int
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client, as SWITCHBOARD_TRUSTED_PROXIES gives them.
	TrustedProxies string
	// AccessTTL is the access tokens' lifetime; zero means 15 minutes.
	AccessTTL time.Duration
	// Hub, if not nil, adjusts the hub's configuration.
	Hub func(*hub.Config)
}

// Node is one Switchboard node behind httptest: the HTTP API and the hub on
// a database of its own and a Redis prefix of its own.
type Node struct {
	*Client
	// Store is the node's storage, for fixtures the API cannot make.
	Store *storage.Store
}

// NewNode starts a node and stops it when t ends, deleting its database
// and Redis keys. It wires the pieces as cmd/switchboard's newNode does
// (real storage, cache, history, poster, auth, denylist, presence, rate
// limits and hub), except that its hub publishes through a
// hub.LocalBroker and no integration is on.
func NewNode(t testing.TB, opts Options) *Node {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	pool := storagetest.NewPool(t)
	rdb, prefix := brokertest.NewClient(t)
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(stop) // ends the cache's retries

	reg := prometheus.NewRegistry()
	store := storage.New(pool)
	tokens, err := auth.New(auth.Config{Secret: Secret, AccessTTL: opts.AccessTTL})
	require.NoError(t, err)
	clients, err := clientip.New(opts.TrustedProxies)
	require.NoError(t, err)
	ended, err := denylist.New(denylist.Config{Redis: rdb, Prefix: prefix})
	require.NoError(t, err)
	cached, err := cache.New(ctx, cache.Config{Store: store, Redis: rdb, Key: prefix + "versions", EndedKey: ended.Key,
		Registerer: reg, Logger: log})
	require.NoError(t, err)
	online, err := presence.New(presence.Config{Redis: rdb, Prefix: prefix})
	require.NoError(t, err)
	authenticator := auth.NewAuthenticator(tokens, cached, ended)
	reads := history.New(cached)

	var h *hub.Hub // the poster publishes through the hub made after it
	post, err := poster.New(poster.Config{Store: store, Announcer: cached, Registerer: reg, Logger: log,
		Publisher: poster.PublisherFunc(func(ctx context.Context, ev hub.Event) error { return h.Publish(ctx, ev) })})
	require.NoError(t, err)
	broker := &hub.LocalBroker{}
	hubCfg := hub.Config{Store: store, Poster: post, History: reads, Presence: online, Sessions: ended, Broker: broker,
		Auth: authenticator, Logger: log, AllowedOrigins: []string{publicURL}, ClientIP: clients.IP,
		RateLimit: 10, RateBurst: 20, Registerer: reg}
	if opts.Hub != nil {
		opts.Hub(&hubCfg)
	}
	h, err = hub.New(hubCfg)
	require.NoError(t, err)
	broker.Attach(h)

	webCfg := web.Config{Store: store, History: reads, Poster: post, Changes: cached, Hub: h, Auth: authenticator,
		Tokens: tokens, Denylist: ended, Presence: online, WebSocket: h, ClientIP: clients.IP, Registerer: reg,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Logger: log,
		Ready: func(ctx context.Context) error { return errors.Join(pool.Ping(ctx), rdb.Ping(ctx).Err()) }}
	webCfg.LoginBackoff, err = ratelimit.NewBackoff(ratelimit.BackoffConfig{Redis: rdb, Prefix: prefix})
	require.NoError(t, err)
	if opts.AuthRateLimit > 0 {
		webCfg.AuthLimiter = newLimiter(t, rdb, prefix, ratelimit.Limit{
			Rate: float64(opts.AuthRateLimit) / 60, Burst: opts.AuthRateLimit})
	}
	httpLimit := opts.HTTPLimit
	if httpLimit == (ratelimit.Limit{}) {
		httpLimit = ratelimit.Limit{Rate: 1000, Burst: 1000}
	}
	webCfg.Limiter = newLimiter(t, rdb, prefix, httpLimit)
	api, err := web.New(webCfg)
	require.NoError(t, err)

	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(sctx); err != nil {
			t.Errorf("apitest: hub shutdown: %v", err)
		}
		srv.Close()
	})
	return &Node{Client: &Client{URL: srv.URL, Pool: pool}, Store: store}
}

// newLimiter returns a rate limiter on rdb under prefix.
func newLimiter(t testing.TB, rdb redis.UniversalClient, prefix string, l ratelimit.Limit) *ratelimit.Redis {
	t.Helper()
	rl, err := ratelimit.New(ratelimit.Config{Redis: rdb, Prefix: prefix, Limit: l})
	require.NoError(t, err)
	return rl
}
