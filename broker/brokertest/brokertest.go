// Package brokertest helps tests run the Redis broker, and any other code
// that keeps state in Redis, against the real Redis: a prefix of their
// own, so that parallel tests never see each other's events or keys, and
// a TCP proxy whose link can be cut, to test outages without stopping the
// server other tests use.
//
// The Redis is one server, TEST_REDIS_URL (default: the local one), unless
// TEST_REDIS_CLUSTER_ADDRS names the seed nodes of a Redis Cluster or
// TEST_REDIS_SENTINEL_ADDRS and TEST_REDIS_SENTINEL_MASTER a primary
// behind Sentinel: `make test` runs the multi-node tests again on both
// (scripts/redis-topologies.sh starts them). Tests that need one server
// (a proxy in front of it, a child process given REDIS_URL) skip on the
// others.
package brokertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisURL is the Redis server tests use when they run on one server.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// Topology is the Redis the tests run on.
type Topology struct {
	ClusterAddrs   []string // a Redis Cluster's seed nodes
	SentinelAddrs  []string // Sentinels, watching SentinelMaster
	SentinelMaster string
}

// Current returns the topology the environment names; the zero Topology
// is the single server of RedisURL.
func Current() Topology {
	split := func(v string) []string {
		if v == "" {
			return nil
		}
		return strings.Split(v, ",")
	}
	return Topology{ClusterAddrs: split(os.Getenv("TEST_REDIS_CLUSTER_ADDRS")),
		SentinelAddrs: split(os.Getenv("TEST_REDIS_SENTINEL_ADDRS")), SentinelMaster: os.Getenv("TEST_REDIS_SENTINEL_MASTER")}
}

// Single reports whether the topology is the one server of RedisURL.
func (tp Topology) Single() bool { return len(tp.ClusterAddrs) == 0 && len(tp.SentinelAddrs) == 0 }

// Client returns a new client of the topology.
func (tp Topology) Client() redis.UniversalClient {
	switch {
	case len(tp.ClusterAddrs) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: tp.ClusterAddrs, ClusterStateReloadInterval: 2 * time.Second})
	case len(tp.SentinelAddrs) > 0:
		return redis.NewFailoverClient(&redis.FailoverOptions{MasterName: tp.SentinelMaster, SentinelAddrs: tp.SentinelAddrs})
	}
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		panic("brokertest: TEST_REDIS_URL: " + err.Error())
	}
	return redis.NewClient(opts)
}

// Env returns the server's environment settings (SPEC §12) for a process
// on the topology.
func (tp Topology) Env() []string {
	switch {
	case len(tp.ClusterAddrs) > 0:
		return []string{"REDIS_CLUSTER_ADDRS=" + strings.Join(tp.ClusterAddrs, ",")}
	case len(tp.SentinelAddrs) > 0:
		return []string{"REDIS_SENTINEL_ADDRS=" + strings.Join(tp.SentinelAddrs, ","), "REDIS_SENTINEL_MASTER=" + tp.SentinelMaster}
	}
	return []string{"REDIS_URL=" + RedisURL()}
}

// RequireSingle skips t unless the tests run on one Redis server.
func RequireSingle(t testing.TB) {
	t.Helper()
	if !Current().Single() {
		t.Skip("needs a single Redis server (TEST_REDIS_URL)")
	}
}

// Prefix returns a Redis prefix that no other test uses.
func Prefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "sbtest:" + hex.EncodeToString(b) + ":"
}

// NewClient connects to the test Redis (Current) and returns the client
// with a prefix no other test uses. When t ends, the keys under the prefix
// are deleted and the client is closed.
func NewClient(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := Current().Client(), Prefix()
	t.Cleanup(func() {
		// t.Context() is cancelled before cleanups run.
		if err := DeleteKeys(context.Background(), rdb, prefix+"*"); err != nil {
			t.Errorf("brokertest: delete keys under %s: %v", prefix, err)
		}
		_ = rdb.Close()
	})
	return rdb, prefix
}

// Proxy forwards TCP connections to a target, the test Redis by default. Cut resets every
// connection and closes new ones at once; Freeze holds every byte without
// closing anything (a silent network); Restore undoes either.
type Proxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	done   chan struct{}
	wg     sync.WaitGroup

	mu    sync.Mutex
	state int           // proxyUp, proxyCut or proxyFrozen
	thaw  chan struct{} // closed when a freeze ends
	conns map[net.Conn]struct{}
}

const (
	proxyUp = iota
	proxyCut
	proxyFrozen
)

// NewProxy starts a proxy to the test Redis on 127.0.0.1 and stops it when
// t ends.
func NewProxy(t testing.TB) *Proxy {
	t.Helper()
	RequireSingle(t)
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	return NewProxyTo(t, opts.Addr)
}

// NewProxyTo starts a proxy to any TCP address (tests cut Postgres with it
// too) and stops it when t ends.
func NewProxyTo(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("brokertest: %v", err)
	}
	p := &Proxy{t: t, ln: ln, target: target, done: make(chan struct{}), thaw: make(chan struct{}),
		conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is RedisURL with the proxy's address.
func (p *Proxy) URL() string {
	opts, _ := redis.ParseURL(RedisURL())
	return "redis://" + p.Addr() + "/" + strconv.Itoa(opts.DB)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.state == proxyCut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

// pipe copies src to dst, holding bytes while frozen.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
		_ = src.Close()
		_ = dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			frozen, thaw := p.state == proxyFrozen, p.thaw
			p.mu.Unlock()
			if frozen {
				select {
				case <-thaw:
				case <-p.done:
					return
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				p.t.Logf("brokertest proxy: %v", err)
			}
			return
		}
	}
}

// Cut closes every proxied connection and closes new ones at once, until
// Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyCut
	for c := range p.conns {
		_ = c.Close()
	}
}

// Freeze stops forwarding bytes, closing nothing, until Restore.
func (p *Proxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = proxyFrozen
}

// Restore forwards again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == proxyFrozen {
		close(p.thaw)
		p.thaw = make(chan struct{})
	}
	p.state = proxyUp
}

func (p *Proxy) close() {
	_ = p.ln.Close()
	close(p.done)
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// DeleteKeys deletes every key that matches pattern (SCAN MATCH, then DEL),
// for tests that clean up after libraries keeping keys of their own, such
// as asynq's "asynq:{<queue>}:…". On a Redis Cluster it goes over every
// primary.
func DeleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) error {
	if c, ok := rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return deleteKeys(ctx, node, pattern)
		})
	}
	return deleteKeys(ctx, rdb, pattern)
}

func deleteKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) error {
	iter := rdb.Scan(ctx, 0, pattern, 500).Iterator()
	for iter.Next(ctx) {
		// One key at a time: on a Cluster node a DEL of several keys must
		// stay within one slot.
		if err := rdb.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}
