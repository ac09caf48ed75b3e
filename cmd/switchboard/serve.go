package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/broker"
	"github.com/switchboard-chat/switchboard/cache"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/clientip"
	"github.com/switchboard-chat/switchboard/denylist"
	"github.com/switchboard-chat/switchboard/history"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/migrations"
	"github.com/switchboard-chat/switchboard/poster"
	"github.com/switchboard-chat/switchboard/presence"
	"github.com/switchboard-chat/switchboard/ratelimit"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/web"
)

// openStore creates the database if missing, connects a pool and applies
// the migrations.
func openStore(ctx context.Context, databaseURL string) (*pgxpool.Pool, error) {
	if err := storage.EnsureDatabase(ctx, databaseURL); err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	db := stdlib.OpenDBFromPool(pool)
	err = migrations.Up(ctx, db)
	db.Close()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// base is what every process that stores messages runs on: Postgres,
// Redis, the job queue, the cache (whose announcements every node's reads
// depend on) and the broker. serve builds a node on it; worker uses it
// alone.
type base struct {
	pool   *pgxpool.Pool
	rdb    redis.UniversalClient
	reg    *prometheus.Registry
	store  *storage.Store
	queue  *jobs.Queue
	cache  *cache.Cache
	broker *broker.Redis
	// denylist holds the ended sessions; the cache reads it with profiles.
	denylist *denylist.Redis
	ctx      context.Context    // of the background work below; ended by stop
	stop     context.CancelFunc // ends the cache's retries and the background work
	// background is the node's own loops on ctx, waited for by close.
	background sync.WaitGroup
}

// newBase connects to Postgres (creating and migrating the database) and
// Redis, and builds the parts every process needs on them.
func newBase(ctx context.Context, cfg *config, log *slog.Logger) (_ *base, err error) {
	b := &base{}
	if b.rdb, err = cfg.redisClient(); err != nil {
		return nil, err
	}
	if b.pool, err = openStore(ctx, cfg.DatabaseURL); err != nil {
		b.rdb.Close()
		return nil, err
	}
	bctx, stop := context.WithCancel(context.Background())
	b.ctx, b.stop = bctx, stop
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	b.reg = prometheus.NewRegistry()
	b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerPoolMetrics(b.reg, b.pool, b.rdb)
	// The queue's journal is in the store, whose phone codes go to the
	// queue: the journal is a Store of its own, without options.
	if b.queue, err = newQueue(cfg, b.rdb, storage.New(b.pool), b.reg, log); err != nil {
		return nil, err
	}
	b.store = storage.New(b.pool, storeOptions(cfg, b.queue)...)
	if b.denylist, err = denylist.New(denylist.Config{Redis: b.rdb, Prefix: cfg.RedisPrefix}); err != nil {
		return nil, err
	}
	b.cache, err = cache.New(bctx, cache.Config{
		Store: b.store, Redis: b.rdb, Key: cfg.RedisPrefix + "versions", EndedKey: b.denylist.Key, Registerer: b.reg,
		Logger: log.With(slog.String("component", "cache")),
	})
	if err != nil {
		return nil, err
	}
	b.broker, err = broker.New(broker.Config{
		Redis:  b.rdb,
		Prefix: cfg.RedisPrefix,
		Logger: log.With(slog.String("component", "broker")),
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// newPoster returns the poster of messages, publishing through pub.
func (b *base) newPoster(pub poster.Publisher, log *slog.Logger) (*poster.Poster, error) {
	return poster.New(poster.Config{Store: b.store, Announcer: b.cache, Publisher: pub, Registerer: b.reg,
		Logger: log.With(slog.String("component", "poster"))})
}

// close stops the broker and the cache and releases Redis and Postgres.
func (b *base) close() {
	if b.broker != nil {
		_ = b.broker.Close()
	}
	if b.stop != nil {
		b.stop()
	}
	b.background.Wait()
	if b.rdb != nil {
		_ = b.rdb.Close()
	}
	if b.pool != nil {
		b.pool.Close()
	}
}

// node is one running Switchboard server: its base, hub and HTTP handler.
type node struct {
	*base
	handler      http.Handler
	hub          *hub.Hub
	poster       *poster.Poster
	workers      *workers // nil when no integration is on
	shuttingDown atomic.Bool
}

// newNode builds a server: the base, the hub, the HTTP API and the job
// workers of the integrations that are on.
func newNode(ctx context.Context, cfg *config, secret []byte, log *slog.Logger) (_ *node, err error) {
	public, err := cfg.publicURL()
	if err != nil {
		return nil, err
	}
	tokens, err := auth.New(auth.Config{Secret: secret, AccessTTL: cfg.AccessTTL})
	if err != nil {
		return nil, err
	}
	clients, err := clientip.New(cfg.TrustedProxies)
	if err != nil {
		return nil, err
	}
	b, err := newBase(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	n := &node{base: b}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	authenticator := auth.NewAuthenticator(tokens, b.cache, b.denylist)
	// Redis may lose the ended sessions (SPEC §15): write them again from
	// Postgres now and then.
	b.background.Go(func() {
		b.denylist.KeepRebuilt(b.ctx, b.store, tokens.AccessTTL(), cmp.Or(cfg.denylistRebuild, 30*time.Second), log)
	})
	online, err := presence.New(presence.Config{Redis: b.rdb, Prefix: cfg.RedisPrefix})
	if err != nil {
		return nil, err
	}
	reads := history.New(b.cache)
	// The hub delivers what the poster stores, and its send frames post:
	// the poster publishes through the hub made just after it.
	post, err := b.newPoster(poster.PublisherFunc(func(ctx context.Context, ev hub.Event) error {
		return n.hub.Publish(ctx, ev)
	}), log)
	if err != nil {
		return nil, err
	}
	n.poster = post
	hubCfg := hub.Config{
		Store:           b.store,
		Poster:          post,
		History:         reads,
		Presence:        online,
		Sessions:        b.denylist,
		Broker:          b.broker,
		Auth:            authenticator,
		Logger:          log.With(slog.String("component", "hub")),
		AllowedOrigins:  cfg.allowedOrigins(public),
		ClientIP:        clients.IP,
		MaxConnsPerUser: cfg.MaxConnsPerUser,
		RateLimit:       cfg.RateLimit,
		RateBurst:       cfg.RateBurst,
		WriteInterval:   cfg.WriteInterval,
		Registerer:      b.reg,
	}
	if cfg.tuneHub != nil {
		cfg.tuneHub(&hubCfg)
	}
	if n.hub, err = hub.New(hubCfg); err != nil {
		return nil, err
	}
	if err := b.broker.Start(n.hub); err != nil {
		return nil, err
	}
	if cfg.smsOn() || cfg.slackOn() {
		if n.workers, err = newWorkers(cfg, b, post, online, tokens, log); err != nil {
			return nil, err
		}
	}
	hooks, err := webhooks(cfg, public, b.store, post, b.queue, log)
	if err != nil {
		return nil, err
	}

	webCfg := web.Config{
		Presence:  online,
		Store:     b.store,
		History:   reads,
		Poster:    post,
		Changes:   b.cache,
		Hub:       n.hub,
		Auth:      authenticator,
		Tokens:    tokens,
		Denylist:  b.denylist,
		Ready:     n.ready,
		WebSocket: n.hub,
		Webhooks:  hooks,
		// A collector that fails (the queue depths while Redis is down)
		// is logged and left out: the rest is served, and no error text
		// reaches the scraper.
		Metrics: promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError,
			ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}),
		Registerer: b.reg,
		ClientIP:   clients.IP,
		Logger:     log.With(slog.String("component", "web")),
	}
	webCfg.LoginBackoff, err = ratelimit.NewBackoff(ratelimit.BackoffConfig{Redis: b.rdb, Prefix: cfg.RedisPrefix})
	if err != nil {
		return nil, err
	}
	if cfg.AuthRateLimit > 0 {
		// The budget refills over a minute, with bursts of a minute's worth.
		rl, err := ratelimit.New(ratelimit.Config{Redis: b.rdb, Prefix: cfg.RedisPrefix, Limit: ratelimit.Limit{
			Rate: float64(cfg.AuthRateLimit) / 60, Burst: cfg.AuthRateLimit}})
		if err != nil {
			return nil, fmt.Errorf("auth rate limit: %w", err)
		}
		webCfg.AuthLimiter = rl
	}
	if cfg.HTTPRateLimit > 0 {
		rl, err := ratelimit.New(ratelimit.Config{Redis: b.rdb, Prefix: cfg.RedisPrefix, Limit: ratelimit.Limit{Rate: cfg.HTTPRateLimit, Burst: cfg.HTTPRateBurst}})
		if err != nil {
			return nil, fmt.Errorf("http rate limit: %w", err)
		}
		webCfg.Limiter = rl
	}
	if n.handler, err = web.New(webCfg); err != nil {
		return nil, err
	}
	return n, nil
}

// startWorkers runs the job workers in the background unless --no-workers
// was given or no integration is on; the function it returns stops them and
// waits for running jobs.
func (n *node) startWorkers(cfg *config, log *slog.Logger) (stop func()) {
	if cfg.NoWorkers || n.workers == nil {
		log.Info("job workers off", slog.Bool("no_workers_flag", cfg.NoWorkers), slog.Bool("sms", cfg.smsOn()), slog.Bool("slack", cfg.slackOn()))
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.workers.run(ctx); err != nil {
			log.Error("job workers stopped", slog.Any("error", err))
		}
	}()
	log.Info("job workers running", slog.Bool("sms", cfg.smsOn()), slog.Bool("slack", cfg.slackOn()))
	return func() {
		cancel()
		<-done
	}
}

// What /readyz tells a client is wrong; the causes go to the log.
var (
	errShuttingDown        = chat.Errorf(chat.CodeUnavailable, "shutting down")
	errPostgresUnreachable = chat.Errorf(chat.CodeUnavailable, "postgres unreachable")
	errRedisUnreachable    = chat.Errorf(chat.CodeUnavailable, "redis unreachable")
)

// ready is /readyz: not shutting down, Postgres and Redis answer.
func (n *node) ready(ctx context.Context) error {
	if n.shuttingDown.Load() {
		return errShuttingDown
	}
	if err := n.pool.Ping(ctx); err != nil {
		return fmt.Errorf("%w: %w", errPostgresUnreachable, err)
	}
	if err := n.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("%w: %w", errRedisUnreachable, err)
	}
	return nil
}

// shutdown fails readiness and closes every WebSocket with 1001, waiting
// for them until ctx ends.
func (n *node) shutdown(ctx context.Context) error {
	n.shuttingDown.Store(true)
	if n.hub == nil {
		return nil
	}
	return n.hub.Shutdown(ctx)
}

func serve(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	cfg.server(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return runServer(ctx, &cfg, cfg.logger())
}

// runServer is the serve command after its flags: it serves on cfg until
// ctx ends, then shuts down within cfg.ShutdownTimeout. dev runs it too.
func runServer(ctx context.Context, cfg *config, log *slog.Logger) error {
	secret, err := cfg.jwtSecret(log)
	if err != nil {
		return err
	}
	n, err := newNode(ctx, cfg, secret, log)
	if err != nil {
		return err
	}
	defer n.close()

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           n.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if cfg.DebugAddr != "" {
		stop, err := serveDebug(cfg.DebugAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	stopWorkers := n.startWorkers(cfg, log)
	public, _ := cfg.publicURL()
	log.Info("switchboard serving", slog.String("url", public), slog.String("addr", ln.Addr().String()))
	fmt.Printf("Switchboard is running at %s (Ctrl-C to stop)\n", public)

	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	// Shutdown, in order: readiness fails, listeners close and HTTP requests
	// drain, WebSockets close with 1001, then the broker, Redis and Postgres
	// (deferred).
	log.Info("shutting down", slog.Duration("grace", cfg.ShutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	n.shuttingDown.Store(true)
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("http shutdown", slog.Any("error", err))
	}
	if err := n.shutdown(sctx); err != nil {
		log.Warn("hub shutdown", slog.Any("error", err))
	}
	stopWorkers()
	log.Info("stopped")
	return nil
}
