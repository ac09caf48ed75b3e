// Package denylist is the Redis auth.Denylist: the sessions that ended
// (logout, logout-all, a password change), seen by every node. It is its
// own package, apart from ratelimit, because it does a different job and
// only shares Redis with it; and it keeps the Redis client out of auth.
//
// Keys: "<prefix>ended:<session id>", set with a TTL that lasts until the
// session's last access token has expired, plus Skew, so that Redis forgets
// a session only once every node refuses its tokens as expired. Redis may
// lose them (SPEC §15); Postgres keeps the ended sessions (their revoked
// refresh tokens), and KeepRebuilt writes those of the last access-token
// lifetime back.
package denylist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/chat"
)

// Skew is how long a key outlives its tokens, for nodes whose clocks run
// behind the one that ended the session.
const Skew = time.Minute

// Redis is a denylist in Redis, shared by every node with the same server
// and prefix. It is safe for concurrent use.
type Redis struct {
	client redis.UniversalClient
	prefix string
	now    func() time.Time
}

// Config configures a denylist.
type Config struct {
	// Redis holds the ended sessions; required.
	Redis redis.UniversalClient
	// Prefix starts every key.
	Prefix string
}

// New returns a denylist.
func New(cfg Config) (*Redis, error) {
	if cfg.Redis == nil {
		return nil, errors.New("denylist: Config needs Redis")
	}
	return &Redis{client: cfg.Redis, prefix: cfg.Prefix, now: time.Now}, nil
}

// Key is the Redis key that exists while session sessionID is ended, for
// readers that check it together with other keys in one round trip.
func (d *Redis) Key(sessionID string) string { return d.prefix + "ended:" + sessionID }

// EndSessions refuses the sessions until until (plus Skew): the moment
// their last access token expires. Ending a session twice is not an error.
func (d *Redis) EndSessions(ctx context.Context, until time.Time, sessionIDs ...string) error {
	ended := make([]chat.EndedSession, len(sessionIDs))
	for i, id := range sessionIDs {
		ended[i] = chat.EndedSession{ID: id, EndedAt: until}
	}
	return d.write(ctx, ended, 0)
}

// write refuses each session until its EndedAt plus after (plus Skew), in
// one round trip; those already past are left out.
func (d *Redis) write(ctx context.Context, ended []chat.EndedSession, after time.Duration) error {
	now := d.now()
	_, err := d.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, e := range ended {
			ttl := e.EndedAt.Add(after).Sub(now) + Skew
			if ttl <= 0 {
				continue
			}
			// Whole seconds, rounded up so the entry never ends early:
			// go-redis then sends SET ... EX.
			p.Set(ctx, d.Key(e.ID), "1", ttl.Truncate(time.Second)+time.Second)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("denylist: end sessions: %w", err)
	}
	return nil
}

// Source is where ended sessions are recorded durably: the store.
type Source interface {
	// EndedSince returns the sessions that ended at or after since.
	EndedSince(ctx context.Context, since time.Time) ([]chat.EndedSession, error)
}

// Rebuild writes again every session src says ended within the last
// accessTTL (the longest an access token of it can still be valid), so
// that a Redis that lost its data (a restart without persistence, a
// failover to a replica that lagged) refuses their tokens again.
func (d *Redis) Rebuild(ctx context.Context, src Source, accessTTL time.Duration) error {
	ended, err := src.EndedSince(ctx, d.now().Add(-accessTTL))
	if err != nil {
		return fmt.Errorf("denylist: rebuild: %w", err)
	}
	return d.write(ctx, ended, accessTTL)
}

// KeepRebuilt runs Rebuild every interval until ctx ends; a failure (Redis
// or Postgres down) waits for the next turn.
func (d *Redis) KeepRebuilt(ctx context.Context, src Source, accessTTL, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := d.Rebuild(ctx, src, accessTTL); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "rebuilding the ended sessions in redis failed", slog.Any("error", err))
		}
	}
}

// Ended returns those of sessionIDs that ended and have not expired yet, in
// one round trip.
func (d *Redis) Ended(ctx context.Context, sessionIDs ...string) ([]string, error) {
	if len(sessionIDs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(sessionIDs))
	_, err := d.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range sessionIDs {
			cmds[i] = p.Exists(ctx, d.Key(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("denylist: ended: %w", err)
	}
	var ended []string
	for i, c := range cmds {
		if c.Val() > 0 {
			ended = append(ended, sessionIDs[i])
		}
	}
	return ended, nil
}
