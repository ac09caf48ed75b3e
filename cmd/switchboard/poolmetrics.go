package main

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// registerPoolMetrics exports the Postgres pool's and the Redis client's
// connection statistics, read at each scrape.
func registerPoolMetrics(reg prometheus.Registerer, pool *pgxpool.Pool, rdb redis.UniversalClient) {
	pg := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_postgres_pool_" + name, Help: help},
			func() float64 { return f(pool.Stat()) })
	}
	pgCounter := func(name, help string, f func(*pgxpool.Stat) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_postgres_pool_" + name, Help: help},
			func() float64 { return f(pool.Stat()) })
	}
	rd := func(name, help string, f func(*redis.PoolStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchboard_redis_pool_" + name, Help: help},
			func() float64 { return f(rdb.PoolStats()) })
	}
	rdCounter := func(name, help string, f func(*redis.PoolStats) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "switchboard_redis_pool_" + name, Help: help},
			func() float64 { return f(rdb.PoolStats()) })
	}
	reg.MustRegister(
		pg("connections", "Postgres connections open.", func(s *pgxpool.Stat) float64 { return float64(s.TotalConns()) }),
		pg("acquired_connections", "Postgres connections in use.", func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) }),
		pg("idle_connections", "Idle Postgres connections.", func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) }),
		pg("max_connections", "Size limit of the Postgres pool.", func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) }),
		pgCounter("acquires_total", "Connections taken from the Postgres pool.", func(s *pgxpool.Stat) float64 { return float64(s.AcquireCount()) }),
		pgCounter("empty_acquires_total", "Acquires that had to wait for a Postgres connection.", func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) }),
		pgCounter("acquire_seconds_total", "Time spent acquiring Postgres connections.", func(s *pgxpool.Stat) float64 { return s.AcquireDuration().Seconds() }),
		rd("connections", "Redis connections open.", func(s *redis.PoolStats) float64 { return float64(s.TotalConns) }),
		rd("idle_connections", "Idle Redis connections.", func(s *redis.PoolStats) float64 { return float64(s.IdleConns) }),
		rdCounter("hits_total", "Redis connections reused from the pool.", func(s *redis.PoolStats) float64 { return float64(s.Hits) }),
		rdCounter("misses_total", "Redis connections the pool had to open.", func(s *redis.PoolStats) float64 { return float64(s.Misses) }),
		rdCounter("timeouts_total", "Waits for a Redis connection that timed out.", func(s *redis.PoolStats) float64 { return float64(s.Timeouts) }),
	)
}
