package presence_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/presence"
)

func setup(t *testing.T, ttl time.Duration) *presence.Redis {
	t.Helper()
	opts, err := redis.ParseURL(brokertest.RedisURL())
	require.NoError(t, err)
	client := redis.NewClient(opts)
	t.Cleanup(func() { _ = client.Close() })
	p, err := presence.New(presence.Config{Client: client, Prefix: brokertest.Prefix(), TTL: ttl})
	require.NoError(t, err)
	return p
}

func TestTransitionsOncePerUser(t *testing.T) {
	t.Parallel()
	p := setup(t, time.Minute)
	ctx := t.Context()

	online, err := p.Connect(ctx, "1", "conn-a")
	require.NoError(t, err)
	require.True(t, online, "first connection: came online")
	online, err = p.Connect(ctx, "1", "conn-b") // e.g. on another node
	require.NoError(t, err)
	require.False(t, online, "second connection: already online")

	got, err := p.Online(ctx, []string{"1", "2"})
	require.NoError(t, err)
	require.Equal(t, []string{"1"}, got)

	offline, err := p.Disconnect(ctx, "1", "conn-a")
	require.NoError(t, err)
	require.False(t, offline, "one connection left")
	offline, err = p.Disconnect(ctx, "1", "conn-b")
	require.NoError(t, err)
	require.True(t, offline, "last connection gone")
	offline, err = p.Disconnect(ctx, "1", "conn-b")
	require.NoError(t, err)
	require.False(t, offline, "a repeated disconnect is not a second transition")

	got, err = p.Online(ctx, []string{"1"})
	require.NoError(t, err)
	require.Empty(t, got)
}

// TestDeadNodeStopsCounting: connections nobody refreshes (their node was
// killed) stop counting after the TTL; refreshed ones stay.
func TestDeadNodeStopsCounting(t *testing.T) {
	t.Parallel()
	p := setup(t, 400*time.Millisecond)
	ctx := t.Context()
	_, err := p.Connect(ctx, "dead", "c1")
	require.NoError(t, err)
	_, err = p.Connect(ctx, "alive", "c2")
	require.NoError(t, err)

	deadline := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(deadline) {
		require.NoError(t, p.Refresh(ctx, map[string][]string{"alive": {"c2"}}))
		time.Sleep(100 * time.Millisecond)
	}
	got, err := p.Online(ctx, []string{"dead", "alive"})
	require.NoError(t, err)
	require.Equal(t, []string{"alive"}, got)

	// One sweep (on whichever node runs it first) reports the dead user
	// once, so one offline event is announced; the live one is never swept.
	gone, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"dead"}, gone)
	gone, err = p.Sweep(ctx)
	require.NoError(t, err)
	require.Empty(t, gone)

	// The dead node's user connecting again is a new transition.
	online, err := p.Connect(ctx, "dead", "c3")
	require.NoError(t, err)
	require.True(t, online)
}
