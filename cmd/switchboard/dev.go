package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/devpg"
	"github.com/switchboard-chat/switchboard/storage"
)

// The demo account and room dev creates unless --no-seed. The password is
// fixed and printed, which is why dev listens on loopback by default.
const (
	demoUser     = "demo"
	demoPassword = "demo-password"
	demoRoom     = "general"
)

// devAddr is dev's default listen address: loopback only, since the demo
// account's password is public.
const devAddr = "127.0.0.1:8080"

// dev runs serve on whatever Postgres and Redis there are: those the
// environment or flags name, else the local ones if they answer at their
// default addresses, else embedded ones (a private PostgreSQL cluster in
// --data-dir, an in-process miniredis). It creates a demo account and room.
func dev(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	cfg.server(fs)
	if os.Getenv("SWITCHBOARD_ADDR") == "" {
		addr := fs.Lookup("addr")
		addr.DefValue = devAddr
		_ = addr.Value.Set(devAddr)
	}
	embedded := fs.Bool("embedded", false, "start embedded Postgres and Redis even where DATABASE_URL, REDIS_URL or local servers could be used")
	noSeed := fs.Bool("no-seed", false, "do not create the demo account and room")
	dataDir := fs.String("data-dir", ".switchboard", "dev's state, kept between runs: the embedded Postgres cluster and its log, the JWT secret")
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if *embedded && (given["database-url"] || given["redis-url"]) {
		return errors.New("dev: --embedded and --database-url/--redis-url exclude each other")
	}
	log := cfg.logger()
	if err := os.MkdirAll(*dataDir, 0o755); err != nil {
		return fmt.Errorf("dev: data dir: %w", err)
	}
	if cfg.JWTSecretFile == "" && os.Getenv("SWITCHBOARD_JWT_SECRET") == "" {
		// Tokens then survive a restart of dev.
		path, err := devSecret(*dataDir)
		if err != nil {
			return err
		}
		cfg.JWTSecretFile = path
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	pg := pick(ctx, given["database-url"] || os.Getenv("DATABASE_URL") != "", *embedded, defaultDatabaseURL, postgresAnswers)
	if pg.embedded {
		srv, err := devpg.Start(ctx, devpg.Config{
			Dir:     filepath.Join(*dataDir, "postgres"),
			LogFile: filepath.Join(*dataDir, "postgres.log"),
			Logger:  log.With(slog.String("component", "devpg")),
		})
		if err != nil {
			return fmt.Errorf("dev: embedded postgres: %w", err)
		}
		defer func() {
			cancel(nil) // first, so the watch below does not report this stop
			if err := srv.Stop(10 * time.Second); err != nil {
				log.Warn("embedded postgres stop", slog.Any("error", err))
			}
		}()
		go func() {
			select {
			case <-srv.Done():
				if ctx.Err() == nil {
					logFile := filepath.Join(*dataDir, "postgres.log")
					log.Error("embedded postgres exited; stopping", slog.String("log", logFile))
					cancel(fmt.Errorf("%w; see %s", errPostgresExited, logFile))
				}
			case <-ctx.Done():
			}
		}()
		cfg.DatabaseURL = srv.URL("switchboard")
		where := filepath.Join(*dataDir, "postgres")
		if abs, err := filepath.Abs(where); err == nil && abs != srv.Dir() {
			// The postgres account cannot enter the data directory (a
			// checkout under /root): the cluster lives where it can.
			where = srv.Dir() + ", linked from " + where
		}
		pg.what = fmt.Sprintf("embedded %s, dev only, data in %s", srv.Version(), where)
	}
	rd := pick(ctx, given["redis-url"] || os.Getenv("REDIS_URL") != "", *embedded, defaultRedisURL, redisAnswers)
	if rd.embedded {
		mr := miniredis.NewMiniRedis()
		mr.ClockTTL(true) // TTLs run on the wall clock, as in Redis
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("dev: embedded redis: %w", err)
		}
		defer mr.Close()
		cfg.RedisURL = "redis://" + mr.Addr() + "/0"
		rd.what = "embedded miniredis, dev only, in memory"
	}
	for _, svc := range []struct {
		name, url string
		src       source
	}{{"Postgres", cfg.DatabaseURL, pg}, {"Redis", cfg.RedisURL, rd}} {
		log.Info("dev mode: "+svc.name+": "+svc.src.what, slog.String("url", svc.url), slog.Bool("embedded", svc.src.embedded),
			slog.String("why", svc.src.why), slog.Any("probe_error", svc.src.err))
		fmt.Printf("%-9s %s (%s; %s)\n", svc.name+":", svc.url, svc.src.what, svc.src.why)
	}

	if !*noSeed {
		if err := seedDemo(ctx, &cfg); err != nil {
			return fmt.Errorf("dev: demo account: %w", err)
		}
		fmt.Printf("Demo:     sign in as %s / %s, room %q (--no-seed skips it)\n", demoUser, demoPassword, demoRoom)
	}
	if cfg.PublicURL == "" && cfg.AllowedOrigins == "" {
		// The page may be opened as localhost or as 127.0.0.1: both are
		// this machine, so both may open WebSockets.
		if _, port, err := net.SplitHostPort(cfg.Addr); err == nil {
			cfg.AllowedOrigins = "http://localhost:" + port + ",http://127.0.0.1:" + port
		}
	}
	if err := runServer(ctx, &cfg, log); err != nil {
		return err
	}
	if cause := context.Cause(ctx); errors.Is(cause, errPostgresExited) {
		return cause
	}
	return nil
}

// errPostgresExited ends dev when its embedded PostgreSQL dies under it.
var errPostgresExited = errors.New("dev: embedded postgres exited")

// source is where dev gets one of its services from.
type source struct {
	embedded bool
	what     string // what it is, for the output
	why      string // why it was chosen
	err      error  // why the default address would not do, if it was tried
}

// pick decides where a service comes from: embedded when forced; the
// configured URL when the environment or a flag named it; the default
// address def when a server answers there; else embedded. answers checks a
// URL.
func pick(ctx context.Context, named, force bool, def string, answers func(context.Context, string) error) source {
	switch {
	case force:
		return source{embedded: true, why: "--embedded"}
	case named:
		return source{what: "configured", why: "named by the environment or a flag"}
	}
	host := def
	if u, err := url.Parse(def); err == nil {
		host = u.Host
	}
	err := answers(ctx, def)
	if err == nil {
		return source{what: "local server", why: "answers at " + host}
	}
	return source{embedded: true, why: "nothing usable answers at " + host, err: err}
}

// postgresAnswers checks that a Postgres server accepts a session at url
// (its maintenance database: url's own may not exist yet).
func postgresAnswers(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.Database = "postgres"
	cfg.ConnectTimeout = 2 * time.Second
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// redisAnswers checks that a Redis server answers PING at url.
func redisAnswers(ctx context.Context, url string) error {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	// A closed port is the common case: find it without go-redis, whose
	// pool logs failed dials.
	conn, err := net.DialTimeout(opts.Network, opts.Addr, 2*time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	opts.DialTimeout, opts.DialerRetries, opts.MaxRetries = 2*time.Second, 1, -1
	c := redis.NewClient(opts)
	defer c.Close()
	return c.Ping(ctx).Err()
}

// devSecret returns the path of dev's JWT secret in dir, making one the
// first time.
func devSecret(dir string) (string, error) {
	path := filepath.Join(dir, "jwt-secret")
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("dev: jwt secret: %w", err)
	}
	_, err = f.WriteString(hex.EncodeToString(b) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("dev: jwt secret: %w", err)
	}
	return path, nil
}

// seedDemo creates the demo account and room unless they exist.
func seedDemo(ctx context.Context, cfg *config) error {
	return withStore(ctx, cfg, func(s *storage.Store) error {
		if _, err := s.UserByUsername(ctx, demoUser); errors.Is(err, chat.ErrNotFound) {
			if _, err := createUser(ctx, s, demoUser, demoPassword, "Demo"); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if _, err := s.RoomByName(ctx, demoRoom); errors.Is(err, chat.ErrNotFound) {
			if _, err := createRoom(ctx, s, demoUser, demoRoom, false); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		return nil
	})
}
