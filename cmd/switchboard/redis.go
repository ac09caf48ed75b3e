package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterStateReload is how often a Cluster client reads the slots' owners.
const clusterStateReload = 2 * time.Second

// redisClient returns a client of the configured Redis topology (SPEC
// §15): a *redis.ClusterClient for a Redis Cluster (REDIS_CLUSTER_ADDRS;
// the broker then uses sharded pub/sub), a failover client that follows
// Sentinel's promotions (REDIS_SENTINEL_ADDRS and REDIS_SENTINEL_MASTER),
// or a client of one server (REDIS_URL). A Cluster or Sentinel setting wins
// over REDIS_URL; both at once is an error. REDIS_PASSWORD applies to
// every topology, REDIS_SENTINEL_PASSWORD to the Sentinels themselves;
// passwords come only from the environment.
func (c *config) redisClient() (redis.UniversalClient, error) {
	password := os.Getenv("REDIS_PASSWORD")
	cluster, sentinels := splitAddrs(c.RedisCluster), splitAddrs(c.RedisSentinels)
	switch {
	case len(cluster) > 0 && len(sentinels) > 0:
		return nil, errors.New("redis: set REDIS_CLUSTER_ADDRS or REDIS_SENTINEL_ADDRS, not both")
	case len(cluster) > 0:
		// A primary that dies answers nothing, not even MOVED, so the map of
		// slots is read again every few seconds (go-redis's default is a
		// minute) to find the replica that took over.
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: cluster, Password: password,
			ClusterStateReloadInterval: clusterStateReload}), nil
	case len(sentinels) > 0:
		if c.RedisMaster == "" {
			return nil, errors.New("redis: REDIS_SENTINEL_ADDRS needs REDIS_SENTINEL_MASTER, the name Sentinel knows the primary by")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.RedisMaster, SentinelAddrs: sentinels,
			SentinelPassword: os.Getenv("REDIS_SENTINEL_PASSWORD"), Password: password,
		}), nil
	case c.RedisMaster != "":
		return nil, errors.New("redis: REDIS_SENTINEL_MASTER needs REDIS_SENTINEL_ADDRS")
	}
	opts, err := redis.ParseURL(c.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	if password != "" {
		opts.Password = password
	}
	return redis.NewClient(opts), nil
}

// splitAddrs splits a comma-separated list of host:port, dropping blanks.
func splitAddrs(s string) []string {
	var addrs []string
	for a := range strings.SplitSeq(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			addrs = append(addrs, a)
		}
	}
	return addrs
}
