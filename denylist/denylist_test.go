package denylist_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/broker/brokertest"
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
