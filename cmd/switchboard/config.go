package main

import (
	"cmp"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
)

// The services serve uses when neither a flag nor the environment names
// them: the local Postgres and Redis at their default ports.
const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/switchboard?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// config is every setting of SPEC §12. Flags override environment variables.
type config struct {
	DatabaseURL     string
	RedisURL        string
	RedisCluster    string // comma-separated seed nodes
	RedisSentinels  string // comma-separated Sentinels
	RedisMaster     string // the master name the Sentinels watch
	RedisPrefix     string
	Addr            string
	PublicURL       string
	AllowedOrigins  string
	JWTSecretFile   string
	RateLimit       float64
	RateBurst       int
	HTTPRateLimit   float64
	HTTPRateBurst   int
	AccessTTL       time.Duration
	AuthRateLimit   int
	TrustedProxies  string
	MaxConnsPerUser int
	ShutdownTimeout time.Duration
	LogLevel        string
	NoWorkers       bool
	Twilio          twilio.SenderConfig // TWILIO_*: SMS is on when all three credentials are set
	Slack           slackConfig         // SLACK_*: Slack is on when both credentials are set
	DebugAddr       string
	WriteInterval   time.Duration

	// tuneHub and tuneJobs, if set, adjust the hub's and the job queue's
	// configuration, and smsGap replaces twilio.Throttle (tests shorten
	// timeouts with them).
	tuneHub  func(*hub.Config)
	tuneJobs func(*jobs.Config)
	smsGap   time.Duration
	// denylistRebuild replaces how often the ended sessions are written to
	// Redis again from Postgres (30 s).
	denylistRebuild time.Duration
}

// slackConfig is the Slack app's credentials and the Web API's address.
type slackConfig struct {
	SigningSecret string
	BotToken      string
	APIURL        string
}

func (c *config) smsOn() bool {
	return c.Twilio.AccountSID != "" && c.Twilio.AuthToken != "" && c.Twilio.From != ""
}

func (c *config) slackOn() bool { return c.Slack.SigningSecret != "" && c.Slack.BotToken != "" }

// integrations reads the Twilio and Slack settings, which come only from the
// environment (they are secrets, SPEC §12).
func (c *config) integrations() {
	c.Twilio = twilio.SenderConfig{
		AccountSID: os.Getenv("TWILIO_ACCOUNT_SID"),
		AuthToken:  os.Getenv("TWILIO_AUTH_TOKEN"),
		From:       os.Getenv("TWILIO_FROM_NUMBER"),
		APIURL:     os.Getenv("TWILIO_API_URL"),
	}
	c.Slack = slackConfig{
		SigningSecret: os.Getenv("SLACK_SIGNING_SECRET"),
		BotToken:      os.Getenv("SLACK_BOT_TOKEN"),
		APIURL:        os.Getenv("SLACK_API_URL"),
	}
}

// redis registers the Redis settings on fs.
func (c *config) redis(fs *flag.FlagSet) {
	fs.StringVar(&c.RedisURL, "redis-url", cmp.Or(os.Getenv("REDIS_URL"), defaultRedisURL), "Redis URL of a single server (env REDIS_URL)")
	fs.StringVar(&c.RedisCluster, "redis-cluster-addrs", os.Getenv("REDIS_CLUSTER_ADDRS"),
		"comma-separated seed nodes of a Redis Cluster, used instead of the Redis URL (env REDIS_CLUSTER_ADDRS)")
	fs.StringVar(&c.RedisSentinels, "redis-sentinel-addrs", os.Getenv("REDIS_SENTINEL_ADDRS"),
		"comma-separated Redis Sentinels, used instead of the Redis URL (env REDIS_SENTINEL_ADDRS)")
	fs.StringVar(&c.RedisMaster, "redis-sentinel-master", os.Getenv("REDIS_SENTINEL_MASTER"),
		"the master name the Sentinels watch (env REDIS_SENTINEL_MASTER)")
	fs.StringVar(&c.RedisPrefix, "redis-prefix", cmp.Or(os.Getenv("SWITCHBOARD_REDIS_PREFIX"), "switchboard:"),
		"prefix of every Redis key and channel; the nodes of one cluster share it (env SWITCHBOARD_REDIS_PREFIX)")
}

// database registers the Postgres setting on fs.
func (c *config) database(fs *flag.FlagSet) {
	fs.StringVar(&c.DatabaseURL, "database-url",
		cmp.Or(os.Getenv("DATABASE_URL"), defaultDatabaseURL),
		"Postgres URL; the database is created if missing (env DATABASE_URL)")
}

// common registers the settings every command needs (the database and the
// JWT secret) on fs.
func (c *config) common(fs *flag.FlagSet) {
	c.database(fs)
	fs.StringVar(&c.JWTSecretFile, "jwt-secret-file", "",
		"file holding the HS256 key shared by all nodes (default: env SWITCHBOARD_JWT_SECRET, else random per start)")
	fs.StringVar(&c.LogLevel, "log-level", cmp.Or(os.Getenv("SWITCHBOARD_LOG_LEVEL"), "info"), "debug, info, warn or error")
	fs.DurationVar(&c.AccessTTL, "access-ttl", envDuration("SWITCHBOARD_ACCESS_TTL", 15*time.Minute),
		"access token lifetime; a WebSocket closes with 4401 when its token expires unless the client sends a fresh one (env SWITCHBOARD_ACCESS_TTL)")
}

// server registers the settings of serve on fs.
func (c *config) server(fs *flag.FlagSet) {
	c.common(fs)
	c.redis(fs)
	c.integrations()
	fs.StringVar(&c.Addr, "addr", cmp.Or(os.Getenv("SWITCHBOARD_ADDR"), ":8080"), "listen address (env SWITCHBOARD_ADDR)")
	fs.StringVar(&c.PublicURL, "public-url", os.Getenv("SWITCHBOARD_PUBLIC_URL"),
		"external base URL (default http://localhost:<port>; env SWITCHBOARD_PUBLIC_URL)")
	fs.StringVar(&c.AllowedOrigins, "allowed-origins", os.Getenv("SWITCHBOARD_ALLOWED_ORIGINS"),
		"comma-separated Origins allowed to open WebSockets (default: the public URL's origin; env SWITCHBOARD_ALLOWED_ORIGINS)")
	fs.Float64Var(&c.RateLimit, "rate-limit", envFloat("SWITCHBOARD_RATE_LIMIT", 10), "per-connection sends per second (env SWITCHBOARD_RATE_LIMIT)")
	fs.IntVar(&c.RateBurst, "rate-burst", int(envFloat("SWITCHBOARD_RATE_BURST", 20)), "per-connection send burst (env SWITCHBOARD_RATE_BURST)")
	fs.Float64Var(&c.HTTPRateLimit, "http-rate-limit", envFloat("SWITCHBOARD_HTTP_RATE_LIMIT", 5),
		"per-user HTTP writes per second, shared by all nodes; 0 turns the limit off (env SWITCHBOARD_HTTP_RATE_LIMIT)")
	fs.IntVar(&c.HTTPRateBurst, "http-rate-burst", int(envFloat("SWITCHBOARD_HTTP_RATE_BURST", 20)),
		"per-user HTTP write burst (env SWITCHBOARD_HTTP_RATE_BURST)")
	fs.IntVar(&c.AuthRateLimit, "auth-rate-limit", int(envFloat("SWITCHBOARD_AUTH_RATE_LIMIT", 60)),
		"login, register and refresh attempts per client IP per minute, shared by all nodes; 0 turns the limit off (env SWITCHBOARD_AUTH_RATE_LIMIT)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", os.Getenv("SWITCHBOARD_TRUSTED_PROXIES"),
		"comma-separated CIDRs of proxies whose X-Forwarded-For names the client (env SWITCHBOARD_TRUSTED_PROXIES)")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", int(envFloat("SWITCHBOARD_MAX_CONNS_PER_USER", 20)),
		"open WebSockets per user on all nodes together (env SWITCHBOARD_MAX_CONNS_PER_USER)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "grace period for SIGTERM: connections and requests drain within it")
	fs.BoolVar(&c.NoWorkers, "no-workers", false, "do not run job workers (SMS, Slack) in this process; run `switchboard worker` instead")
	fs.DurationVar(&c.WriteInterval, "write-interval", envDuration("SWITCHBOARD_WRITE_INTERVAL", 50*time.Millisecond),
		"least time between two writes of messages to one WebSocket; what arrives meanwhile shares one frame (answers never wait; negative: off) (env SWITCHBOARD_WRITE_INTERVAL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", os.Getenv("SWITCHBOARD_DEBUG_ADDR"),
		"listen address of the pprof debug endpoints (/debug/pprof/); empty (the default) turns them off. Bind it to loopback (env SWITCHBOARD_DEBUG_ADDR)")
}

func envFloat(key string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return v
	}
	return def
}

// publicURL is the configured public URL or http://localhost:<port>.
func (c *config) publicURL() (string, error) {
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("public url %q is not an absolute URL", c.PublicURL)
		}
		return strings.TrimRight(c.PublicURL, "/"), nil
	}
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "", fmt.Errorf("addr %q: %w", c.Addr, err)
	}
	return "http://localhost:" + port, nil
}

// allowedOrigins is the configured list or the public URL's origin.
func (c *config) allowedOrigins(public string) []string {
	if c.AllowedOrigins == "" {
		u, _ := url.Parse(public)
		return []string{u.Scheme + "://" + u.Host}
	}
	var out []string
	for _, o := range strings.Split(c.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// jwtSecret reads the secret from the file flag, then the environment, and
// otherwise makes a random one (tokens then die with the process, and nodes
// cannot share them). It logs where the key came from, never the key.
func (c *config) jwtSecret(log *slog.Logger) ([]byte, error) {
	switch {
	case c.JWTSecretFile != "":
		b, err := os.ReadFile(c.JWTSecretFile)
		if err != nil {
			return nil, fmt.Errorf("read jwt secret file: %w", err)
		}
		secret := []byte(strings.TrimSpace(string(b)))
		if len(secret) == 0 {
			return nil, errors.New("jwt secret file is empty")
		}
		log.Info("JWT secret loaded", slog.String("from", c.JWTSecretFile))
		return secret, nil
	case os.Getenv("SWITCHBOARD_JWT_SECRET") != "":
		log.Info("JWT secret loaded", slog.String("from", "SWITCHBOARD_JWT_SECRET"))
		return []byte(os.Getenv("SWITCHBOARD_JWT_SECRET")), nil
	}
	log.Warn("no JWT secret configured: using a random one, so tokens die with this process and other nodes refuse them; set SWITCHBOARD_JWT_SECRET or --jwt-secret-file")
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return secret, nil
}

func (c *config) logger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
