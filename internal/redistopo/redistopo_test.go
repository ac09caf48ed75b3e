package redistopo_test

import (
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/switchboard-chat/switchboard/internal/redistopo"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func client(t *testing.T, s *redistopo.Server) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ReadTimeout: time.Second, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireGone checks that nothing listens on addrs any more.
func requireGone(t *testing.T, addrs []string) {
	t.Helper()
	for _, addr := range addrs {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			t.Errorf("%s still answers after the test ended", addr)
		}
	}
}

func TestSingleKillRestartPause(t *testing.T) {
	t.Parallel()
	var addr string
	t.Run("server", func(t *testing.T) {
		ctx := t.Context()
		start := time.Now()
		s := redistopo.Single(t)
		t.Logf("single server up in %s", time.Since(start))
		addr = s.Addr()
		c := client(t, s)
		require.NoError(t, c.Set(ctx, "k", "v", 0).Err())

		s.Kill(t)
		require.Error(t, c.Get(ctx, "k").Err())
		start = time.Now()
		s.Restart(t)
		t.Logf("restarted in %s", time.Since(start))
		require.Equal(t, addr, s.Addr())
		require.ErrorIs(t, c.Get(ctx, "k").Err(), redis.Nil, "a restarted server is empty")
		require.Zero(t, c.DBSize(ctx).Val())

		s.Pause(t)
		err := c.Set(ctx, "k", "v", 0).Err()
		var netErr net.Error
		require.True(t, errors.As(err, &netErr) && netErr.Timeout(), "a paused server does not answer: %v", err)
		s.Resume(t)
		require.NoError(t, c.Set(ctx, "k", "v", 0).Err())
	})
	requireGone(t, []string{addr})
}

func TestCluster(t *testing.T) {
	t.Parallel()
	var addrs []string
	t.Run("cluster", func(t *testing.T) {
		ctx := t.Context()
		start := time.Now()
		c := redistopo.StartCluster(t)
		t.Logf("cluster up in %s", time.Since(start))
		addrs = c.Addrs()
		require.Len(t, addrs, 6)
		// go-redis reloads the slots' owners on MOVED and READONLY, which a
		// dead primary does not answer, and otherwise every
		// ClusterStateReloadInterval (60 s by default).
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ClusterStateReloadInterval: time.Second})
		t.Cleanup(func() { _ = cc.Close() })

		// A key on every primary, through the cluster client, and found on
		// the primary PrimaryOf names.
		keys := map[*redistopo.Server]string{}
		for i := 0; len(keys) < 3; i++ {
			require.Less(t, i, 100, "100 keys on fewer than 3 primaries")
			key := fmt.Sprintf("key-%d", i)
			p := c.PrimaryOf(t, key)
			if _, ok := keys[p]; ok {
				continue
			}
			keys[p] = key
			require.NoError(t, cc.Set(ctx, key, "v1", 0).Err())
			require.Equal(t, "v1", cc.Get(ctx, key).Val())
			require.Equal(t, "v1", client(t, p).Get(ctx, key).Val(), "%s on %s", key, p.Addr())
		}

		// A primary crashes: its replica takes over, and the same client
		// writes again.
		key := keys[c.Servers()[0]]
		old := c.PrimaryOf(t, key)
		old.Kill(t)
		start = time.Now()
		c.WaitHealthy(t)
		t.Logf("replica of a killed primary serving in %s", time.Since(start))
		promoted := c.PrimaryOf(t, key)
		require.NotSame(t, old, promoted)
		require.NoError(t, cc.Set(ctx, key, "v2", 0).Err())
		require.Equal(t, "v2", client(t, promoted).Get(ctx, key).Val())

		// It comes back empty, as the replica of the one that took over.
		start = time.Now()
		old.Restart(t)
		c.WaitHealthy(t)
		t.Logf("killed primary back as a replica, in sync, in %s", time.Since(start))
		require.Same(t, promoted, c.PrimaryOf(t, key))

		// A primary that stops answering is replaced too, and rejoins as a
		// replica when it answers again.
		paused := c.PrimaryOf(t, keys[c.Servers()[1]])
		paused.Pause(t)
		start = time.Now()
		c.WaitHealthy(t)
		t.Logf("replica of a paused primary serving in %s", time.Since(start))
		require.NotSame(t, paused, c.PrimaryOf(t, keys[c.Servers()[1]]))
		start = time.Now()
		paused.Resume(t)
		c.WaitHealthy(t)
		t.Logf("paused primary back as a replica, in sync, in %s", time.Since(start))

		// A failover without a crash gives the slots back.
		start = time.Now()
		require.Same(t, old, c.Failover(t, promoted))
		t.Logf("CLUSTER FAILOVER done in %s", time.Since(start))
		require.Same(t, old, c.PrimaryOf(t, key))
		require.NoError(t, cc.Set(ctx, key, "v3", 0).Err())
		require.Equal(t, "v3", client(t, old).Get(ctx, key).Val())
	})
	requireGone(t, addrs)
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	var addrs []string
	t.Run("sentinel", func(t *testing.T) {
		ctx := t.Context()
		start := time.Now()
		s := redistopo.StartSentinel(t)
		t.Logf("sentinel topology up in %s", time.Since(start))
		for _, srv := range s.Servers() {
			addrs = append(addrs, srv.Addr())
		}
		addrs = append(addrs, s.SentinelAddrs()...)
		fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: s.MasterName(), SentinelAddrs: s.SentinelAddrs()})
		t.Cleanup(func() { _ = fc.Close() })

		first := s.Primary(t)
		require.Same(t, s.Servers()[0], first)
		require.NoError(t, fc.Set(ctx, "k", "v1", 0).Err())

		start = time.Now()
		second := s.Failover(t)
		t.Logf("SENTINEL FAILOVER done in %s", time.Since(start))
		require.Same(t, s.Servers()[1], second)
		require.Same(t, second, s.Primary(t))
		// The old primary takes writes until the Sentinels make it a
		// replica; the client leaves it on the +switch-master message of
		// its Sentinel, which may come a moment after Failover returns.
		direct := client(t, second)
		require.Eventually(t, func() bool {
			return fc.Set(ctx, "k", "v2", 0).Err() == nil && direct.Get(ctx, "k").Val() == "v2"
		}, 5*time.Second, 10*time.Millisecond, "a write through the client reaches the new primary")

		start = time.Now()
		s.WaitHealthy(t)
		t.Logf("old primary a replica, in sync, in %s", time.Since(start))

		// The primary crashes: the Sentinels promote the replica.
		second.Kill(t)
		start = time.Now()
		require.Same(t, first, s.WaitPrimary(t, second))
		t.Logf("replica of a killed primary promoted in %s", time.Since(start))
		require.NoError(t, fc.Set(ctx, "k", "v3", 0).Err())
		require.Equal(t, "v3", client(t, first).Get(ctx, "k").Val())

		start = time.Now()
		second.Restart(t)
		s.WaitHealthy(t)
		t.Logf("killed primary back as a replica, in sync, in %s", time.Since(start))
	})
	requireGone(t, addrs)
}
