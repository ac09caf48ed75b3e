package presence_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/internal/redistopo"
	"github.com/switchboard-chat/switchboard/presence"
)

func setup(t *testing.T, ttl time.Duration) *presence.Redis {
	t.Helper()
	client, prefix := brokertest.NewClient(t)
	p, err := presence.New(presence.Config{Redis: client, Prefix: prefix, TTL: ttl})
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
	require.True(t, offline, "a cleanup run again (after an outage) finds the user offline too")

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
		_, err := p.Refresh(ctx, map[string][]string{"alive": {"c2"}})
		require.NoError(t, err)
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

// setupClient is setup that also returns the client and prefix, to make
// Redis lose what it holds under the prefix.
func setupClient(t *testing.T, ttl time.Duration) (*presence.Redis, redis.UniversalClient, string) {
	t.Helper()
	client, prefix := brokertest.NewClient(t)
	p, err := presence.New(presence.Config{Redis: client, Prefix: prefix, TTL: ttl, Partitions: 4})
	require.NoError(t, err)
	return p, client, prefix
}

// TestRefreshReassertsWhatRedisLost: Redis loses every entry (a restart
// without persistence); the next refresh of each node adds its live
// connections back, reports their users as online again (once), indexes
// them again for the sweep, and refuses none for the cap.
func TestRefreshReassertsWhatRedisLost(t *testing.T) {
	t.Parallel()
	p, client, prefix := setupClient(t, 400*time.Millisecond)
	ctx := t.Context()
	for _, c := range [][2]string{{"1", "a"}, {"2", "b"}, {"3", "c"}} {
		_, allowed, err := p.Connect(ctx, c[0], c[1], 1)
		require.NoError(t, err)
		require.True(t, allowed)
	}
	require.NoError(t, brokertest.DeleteKeys(ctx, client, prefix+"*"))
	got, err := p.Online(ctx, []string{"1", "2", "3"})
	require.NoError(t, err)
	require.Empty(t, got, "Redis lost them")

	// Node one holds 1's and 3's connections (3's second one came while
	// Redis was down, uncounted: over the cap of 1, but live); node two
	// holds 2's.
	came, err := p.Refresh(ctx, map[string][]string{"1": {"a"}, "3": {"c", "c2"}})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"1", "3"}, came)
	came, err = p.Refresh(ctx, map[string][]string{"2": {"b"}})
	require.NoError(t, err)
	require.Equal(t, []string{"2"}, came)
	got, err = p.Online(ctx, []string{"1", "2", "3"})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"1", "2", "3"}, got)
	came, err = p.Refresh(ctx, map[string][]string{"1": {"a"}, "2": {"b"}, "3": {"c", "c2"}})
	require.NoError(t, err)
	require.Empty(t, came, "online already: no second transition")
	_, allowed, err := p.Connect(ctx, "3", "c3", 2)
	require.NoError(t, err)
	require.False(t, allowed, "both re-asserted connections count")
	offline, err := p.Disconnect(ctx, "3", "c")
	require.NoError(t, err)
	require.False(t, offline)

	// The index came back too: once nobody refreshes 1, a sweep finds them.
	deadline := time.Now().Add(700 * time.Millisecond)
	for time.Now().Before(deadline) {
		_, err := p.Refresh(ctx, map[string][]string{"2": {"b"}, "3": {"c2"}})
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
	}
	gone, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"1"}, gone)
}

// TestDisconnectAfterRedisLostIt: a cleanup that runs after Redis lost the
// entry (the first attempt failed during the outage) reports the user
// offline, unless another connection of theirs is live.
func TestDisconnectAfterRedisLostIt(t *testing.T) {
	t.Parallel()
	p, client, prefix := setupClient(t, time.Minute)
	ctx := t.Context()
	for _, c := range [][2]string{{"1", "a"}, {"2", "b"}, {"2", "b-new"}} {
		_, _, err := p.Connect(ctx, c[0], c[1], 0)
		require.NoError(t, err)
	}
	require.NoError(t, brokertest.DeleteKeys(ctx, client, prefix+"*"))
	_, err := p.Refresh(ctx, map[string][]string{"2": {"b-new"}}) // 2 reconnected meanwhile
	require.NoError(t, err)
	offline, err := p.Disconnect(ctx, "1", "a")
	require.NoError(t, err)
	require.True(t, offline)
	offline, err = p.Disconnect(ctx, "2", "b")
	require.NoError(t, err)
	require.False(t, offline, "a stale cleanup leaves the new connection")
	got, err := p.Online(ctx, []string{"1", "2"})
	require.NoError(t, err)
	require.Equal(t, []string{"2"}, got)
}

// TestScriptsReloadAfterRestart: Redis forgets its scripts when it
// restarts; the pipelined scripts load them again.
func TestScriptsReloadAfterRestart(t *testing.T) {
	t.Parallel()
	p, client, _ := setupClient(t, time.Minute)
	ctx := t.Context()
	_, _, err := p.Connect(ctx, "1", "a", 0)
	require.NoError(t, err)
	require.NoError(t, client.ScriptFlush(ctx).Err())
	_, err = p.Refresh(ctx, map[string][]string{"1": {"a"}})
	require.NoError(t, err)
	require.NoError(t, client.ScriptFlush(ctx).Err())
	_, err = p.Sweep(ctx)
	require.NoError(t, err)
}

func TestPrefixWithBraceRefused(t *testing.T) {
	t.Parallel()
	client, _ := brokertest.NewClient(t)
	for _, prefix := range []string{"sw{itch}:", "a}", "{"} {
		_, err := presence.New(presence.Config{Redis: client, Prefix: prefix})
		require.ErrorContains(t, err, "brace", prefix)
	}
}

// TestOnACluster: on a Redis Cluster (three primaries) every script's keys
// are on one slot, so connecting, re-asserting after Redis lost
// everything, disconnecting and sweeping users of every partition never
// meets a cross-slot error, and the answers are those of one server.
func TestOnACluster(t *testing.T) {
	t.Parallel()
	cluster := redistopo.StartCluster(t)
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster.Addrs()})
	t.Cleanup(func() { _ = client.Close() })
	// Long enough for 200 connects on a busy machine before the first
	// entries would expire; the sweep below waits it out.
	const ttl = 3 * time.Second
	p, err := presence.New(presence.Config{Redis: client, Prefix: brokertest.Prefix(), TTL: ttl})
	require.NoError(t, err)
	ctx := t.Context()

	var users []string
	conns := map[string][]string{}
	for i := range 200 {
		u := fmt.Sprint(i + 1)
		users = append(users, u)
		conns[u] = []string{"c" + u}
		online, allowed, err := p.Connect(ctx, u, "c"+u, 1)
		require.NoError(t, err)
		require.True(t, online && allowed)
	}
	got, err := p.Online(ctx, users)
	require.NoError(t, err)
	require.ElementsMatch(t, users, got)

	require.NoError(t, client.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err() // and the scripts: they are loaded again
	}))
	came, err := p.Refresh(ctx, conns)
	require.NoError(t, err)
	require.ElementsMatch(t, users, came)

	for _, u := range users[:100] {
		offline, err := p.Disconnect(ctx, u, "c"+u)
		require.NoError(t, err)
		require.True(t, offline)
	}
	time.Sleep(ttl + 200*time.Millisecond) // the other half expire
	gone, err := p.Sweep(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, users[100:], gone)
}
