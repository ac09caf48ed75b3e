package presence_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/presence"
)

func setup(t *testing.T, ttl time.Duration) *presence.Redis {
	t.Helper()
	client, prefix := brokertest.NewClient(t)
	p, err := presence.New(presence.Config{Client: client, Prefix: prefix, TTL: ttl})
	require.NoError(t, err)
	return p
}

func TestTransitionsOncePerUser(t *testing.T) {
	t.Parallel()
	p := setup(t, time.Minute)
	ctx := t.Context()

	online, _, err := p.Connect(ctx, "1", "conn-a", 0)
	require.NoError(t, err)
	require.True(t, online, "first connection: came online")
	online, _, err = p.Connect(ctx, "1", "conn-b", 0) // e.g. on another node
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
	_, _, err := p.Connect(ctx, "dead", "c1", 0)
	require.NoError(t, err)
	_, _, err = p.Connect(ctx, "alive", "c2", 0)
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
	online, _, err := p.Connect(ctx, "dead", "c3", 0)
	require.NoError(t, err)
	require.True(t, online)
}

// TestConnectionCap: a user's live connections on every node together are
// capped; a refused one is not recorded, a closed one frees its place, and
// those of a dead node free theirs when they expire.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	p := setup(t, 400*time.Millisecond)
	ctx := t.Context()
	for i := range 3 {
		_, allowed, err := p.Connect(ctx, "1", fmt.Sprint("c", i), 3)
		require.NoError(t, err)
		require.True(t, allowed, "connection %d", i)
	}
	online, allowed, err := p.Connect(ctx, "1", "c3", 3)
	require.NoError(t, err)
	require.False(t, allowed, "the fourth is over the cap")
	require.False(t, online)
	_, allowed, err = p.Connect(ctx, "2", "other-user", 3)
	require.NoError(t, err)
	require.True(t, allowed, "another user has a cap of their own")

	// The refused one left nothing behind: closing one makes room for one.
	_, err = p.Disconnect(ctx, "1", "c0")
	require.NoError(t, err)
	_, allowed, err = p.Connect(ctx, "1", "c4", 3)
	require.NoError(t, err)
	require.True(t, allowed)
	_, allowed, err = p.Connect(ctx, "1", "c5", 3)
	require.NoError(t, err)
	require.False(t, allowed)

	// Nobody refreshes them (their node died): once they expire, the user
	// may connect again.
	time.Sleep(500 * time.Millisecond)
	_, allowed, err = p.Connect(ctx, "1", "c6", 3)
	require.NoError(t, err)
	require.True(t, allowed)
}
