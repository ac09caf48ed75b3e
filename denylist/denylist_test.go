package denylist_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/denylist"
)

var _ auth.Denylist = (*denylist.Redis)(nil)

func TestRedis(t *testing.T) {
	t.Parallel()
	opts, err := redis.ParseURL(brokertest.RedisURL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	prefix := brokertest.Prefix()
	ctx := t.Context()
	a, err := denylist.NewRedis(client, prefix)
	require.NoError(t, err)
	b, err := denylist.NewRedis(client, prefix) // another node
	require.NoError(t, err)

	revoked, err := b.IsRevoked(ctx, "jti-1")
	require.NoError(t, err)
	require.False(t, revoked)

	exp := time.Now().Add(15 * time.Minute)
	require.NoError(t, a.Revoke(ctx, "jti-1", exp))
	require.NoError(t, a.Revoke(ctx, "jti-1", exp), "revoking twice is not an error")
	for jti, want := range map[string]bool{"jti-1": true, "jti-2": false, "": false} {
		got, err := b.IsRevoked(ctx, jti)
		require.NoError(t, err)
		require.Equal(t, want, got, "jti %q", jti)
	}

	ttl, err := client.TTL(ctx, prefix+"revoked:jti-1").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 15*time.Minute)
	require.LessOrEqual(t, ttl, 15*time.Minute+denylist.Skew+time.Second)

	// A token expired for longer than Skew needs no entry.
	require.NoError(t, a.Revoke(ctx, "old", time.Now().Add(-2*denylist.Skew)))
	n, err := client.Exists(ctx, prefix+"revoked:old").Result()
	require.NoError(t, err)
	require.Zero(t, n)

	// Others see a token refused as expired no longer than Skew after.
	require.NoError(t, a.Revoke(ctx, "recent", time.Now().Add(-denylist.Skew+2*time.Second)))
	ttl, err = client.TTL(ctx, prefix+"revoked:recent").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0))
	require.LessOrEqual(t, ttl, 3*time.Second)
}
