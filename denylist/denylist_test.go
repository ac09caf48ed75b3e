package denylist_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/denylist"
)

var _ auth.Denylist = (*denylist.Redis)(nil)

func TestRedis(t *testing.T) {
	t.Parallel()
	client, prefix := brokertest.NewClient(t)
	ctx := t.Context()
	a, err := denylist.New(denylist.Config{Redis: client, Prefix: prefix})
	require.NoError(t, err)
	b, err := denylist.New(denylist.Config{Redis: client, Prefix: prefix}) // another node
	require.NoError(t, err)

	ended, err := b.Ended(ctx, "s-1")
	require.NoError(t, err)
	require.Empty(t, ended)

	until := time.Now().Add(15 * time.Minute)
	require.NoError(t, a.EndSessions(ctx, until, "s-1", "s-3"))
	require.NoError(t, a.EndSessions(ctx, until, "s-1"), "ending twice is not an error")
	ended, err = b.Ended(ctx, "s-1", "s-2", "", "s-3")
	require.NoError(t, err)
	require.Equal(t, []string{"s-1", "s-3"}, ended)

	ttl, err := client.TTL(ctx, prefix+"ended:s-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 15*time.Minute)
	require.LessOrEqual(t, ttl, 15*time.Minute+denylist.Skew+time.Second)

	// A session whose tokens expired longer than Skew ago needs no entry.
	require.NoError(t, a.EndSessions(ctx, time.Now().Add(-2*denylist.Skew), "old"))
	n, err := client.Exists(ctx, prefix+"ended:old").Result()
	require.NoError(t, err)
	require.Zero(t, n)

	// Others see its tokens refused as expired no longer than Skew after.
	require.NoError(t, a.EndSessions(ctx, time.Now().Add(-denylist.Skew+2*time.Second), "recent"))
	ttl, err = client.TTL(ctx, prefix+"ended:recent").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0))
	require.LessOrEqual(t, ttl, 3*time.Second)
}

// sessionsFrom is a Source over a fixed list.
type sessionsFrom []chat.EndedSession

func (s sessionsFrom) EndedSince(_ context.Context, since time.Time) ([]chat.EndedSession, error) {
	var out []chat.EndedSession
	for _, e := range s {
		if !e.EndedAt.Before(since) {
			out = append(out, e)
		}
	}
	return out, nil
}

// TestRebuild: after Redis lost the entries, Rebuild writes again those of
// the sessions that ended within an access token's lifetime, until their
// last token expires, and not the older ones.
func TestRebuild(t *testing.T) {
	t.Parallel()
	client, prefix := brokertest.NewClient(t)
	ctx := t.Context()
	d, err := denylist.New(denylist.Config{Redis: client, Prefix: prefix})
	require.NoError(t, err)
	const accessTTL = 15 * time.Minute
	now := time.Now()
	src := sessionsFrom{
		{ID: "just-now", EndedAt: now},
		{ID: "ten-minutes-ago", EndedAt: now.Add(-10 * time.Minute)},
		{ID: "an-hour-ago", EndedAt: now.Add(-time.Hour)},
	}
	require.NoError(t, d.EndSessions(ctx, now.Add(accessTTL), "just-now"))
	require.NoError(t, client.Del(ctx, d.Key("just-now")).Err(), "Redis lost it")

	require.NoError(t, d.Rebuild(ctx, src, accessTTL))
	ended, err := d.Ended(ctx, "just-now", "ten-minutes-ago", "an-hour-ago")
	require.NoError(t, err)
	require.Equal(t, []string{"just-now", "ten-minutes-ago"}, ended)
	ttl, err := client.TTL(ctx, d.Key("ten-minutes-ago")).Result()
	require.NoError(t, err)
	require.InDelta(t, (5*time.Minute + denylist.Skew).Seconds(), ttl.Seconds(), 3, "until its last token expires")
}
