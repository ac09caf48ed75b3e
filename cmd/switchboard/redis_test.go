package main

import (
	"flag"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestRedisTopology: the Cluster and Sentinel settings win over REDIS_URL,
// both at once, or a Sentinel half-configured, stop the start with a
// message, and REDIS_PASSWORD reaches the client.
func TestRedisTopology(t *testing.T) {
	t.Setenv("REDIS_URL", "redis://127.0.0.1:6399/3")
	t.Setenv("REDIS_PASSWORD", "s3cret")
	for _, tc := range []struct {
		name, cluster, sentinels, master string
		want                             string // "plain", "cluster", "failover" or an error
	}{
		{name: "url alone", want: "plain"},
		{name: "cluster wins over the url", cluster: "127.0.0.1:7000, 127.0.0.1:7001,", want: "cluster"},
		{name: "sentinel wins over the url", sentinels: "127.0.0.1:26390", master: "switchboard", want: "failover"},
		{name: "both", cluster: "127.0.0.1:7000", sentinels: "127.0.0.1:26390", master: "m",
			want: "redis: set REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS, not both"},
		{name: "sentinels without a master", sentinels: "127.0.0.1:26390",
			want: "redis: REDIS_SENTINEL_ADDRS needs REDIS_SENTINEL_MASTER, the name Sentinel knows the primary by"},
		{name: "master without sentinels", master: "switchboard", want: "redis: REDIS_SENTINEL_MASTER needs REDIS_SENTINEL_ADDRS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("REDIS_CLUSTER_ADDRS", tc.cluster)
			t.Setenv("REDIS_SENTINEL_ADDRS", tc.sentinels)
			t.Setenv("REDIS_SENTINEL_MASTER", tc.master)
			var cfg config
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			cfg.redis(fs)
			require.NoError(t, fs.Parse(nil))
			rdb, err := cfg.redisClient()
			switch tc.want {
			case "plain", "failover":
				require.NoError(t, err)
				defer rdb.Close()
				c, ok := rdb.(*redis.Client)
				require.True(t, ok, "%T", rdb)
				require.Equal(t, "s3cret", c.Options().Password)
				if tc.want == "plain" {
					require.Equal(t, "127.0.0.1:6399", c.Options().Addr)
					require.Equal(t, 3, c.Options().DB)
				} else {
					require.Contains(t, c.String(), "FailoverClient", "a client that asks the Sentinels for the primary")
				}
			case "cluster":
				require.NoError(t, err)
				defer rdb.Close()
				c, ok := rdb.(*redis.ClusterClient)
				require.True(t, ok, "%T", rdb)
				require.Equal(t, []string{"127.0.0.1:7000", "127.0.0.1:7001"}, c.Options().Addrs)
				require.Equal(t, "s3cret", c.Options().Password)
				require.Equal(t, clusterStateReload, c.Options().ClusterStateReloadInterval)
			default:
				require.EqualError(t, err, tc.want)
			}
		})
	}
}
