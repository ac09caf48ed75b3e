package redistopo_test

import (
	"errors"
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
