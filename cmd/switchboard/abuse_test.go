package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/presence"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// This file tests the abuse limits of SPEC §3 and §6: on auth, on
// connections, and on frames.

// passwordWork is how many password hashes and checks the node did.
func passwordWork(t *testing.T, s *testServer) float64 {
	t.Helper()
	r := s.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	total := 0.0
	for _, line := range strings.Split(string(r.Raw), "\n") {
		if strings.HasPrefix(line, "switchboard_password_work_total{") {
			f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			require.NoError(t, err)
			total += f
		}
	}
	return total
}

// TestAuthRateLimitPerIP: login, register and refresh share a budget per
// client IP, on every node; past it, 429 and no password is hashed or
// checked, nothing is stored.
func TestAuthRateLimitPerIP(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	opts := nodeOptions{databaseURL: db, redisPrefix: prefix, authRateLimit: 5, trustedProxies: "127.0.0.1/32"}
	a, b := newTestServerWith(t, opts), newTestServerWith(t, opts)
	alice := a.register(t, "alice")
	attacker := apitest.From("198.51.100.7")

	// Five attempts of any kind, on either node.
	for i, s := range []*testServer{a, b, a, b} {
		r := s.doFrom(t, attacker, "POST", "/api/v1/auth/login", "", map[string]any{"username": alice.Username, "password": fmt.Sprint("guess ", i)})
		requireAPIError(t, r, http.StatusUnauthorized, "invalid_credentials")
	}
	r := b.doFrom(t, attacker, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": "not-one"})
	requireAPIError(t, r, http.StatusUnauthorized, "unauthorized")

	// The sixth: refused before any password work, even the right password.
	workA, workB := passwordWork(t, a), passwordWork(t, b)
	r = a.doFrom(t, attacker, "POST", "/api/v1/auth/login", "", map[string]any{"username": alice.Username, "password": fixturePassword})
	apitest.RequireRetryAfter(t, r, 1, 12)
	r = b.doFrom(t, attacker, "POST", "/api/v1/auth/register", "", map[string]any{"username": "squatter", "password": "long enough password"})
	apitest.RequireRetryAfter(t, r, 1, 12)
	r = b.doFrom(t, attacker, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": alice.Refresh})
	apitest.RequireRetryAfter(t, r, 1, 12)
	require.Equal(t, workA, passwordWork(t, a), "no password work past the limit")
	require.Equal(t, workB, passwordWork(t, b))
	var n int
	require.NoError(t, a.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM users WHERE username = 'squatter'`).Scan(&n))
	require.Zero(t, n, "nothing stored past the limit")
	require.Equal(t, http.StatusOK, a.refresh(t, alice).Status, "the refused refresh spent nothing")

	// Another client is not affected; logout is never limited.
	r = b.doFrom(t, apitest.From("198.51.100.8"), "POST", "/api/v1/auth/login", "", map[string]any{"username": alice.Username, "password": fixturePassword})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	token := r.Body["access_token"].(string)
	require.Equal(t, http.StatusNoContent, a.doFrom(t, attacker, "POST", "/api/v1/auth/logout", token, nil).Status)
	require.Greater(t, metricValue(t, a, `switchboard_auth_refused_total{limit="ip"}`), 0.0)
}

// TestLoginBackoff: after 5 failed logins in a row, a username waits,
// doubling from 1 s, whatever the client's IP, and the password is not
// checked while it waits; a success forgets the failures.
func TestLoginBackoff(t *testing.T) {
	t.Parallel()
	db, prefix := storagetest.NewDatabase(t), brokertest.Prefix()
	opts := nodeOptions{databaseURL: db, redisPrefix: prefix, trustedProxies: "127.0.0.1/32"}
	a, b := newTestServerWith(t, opts), newTestServerWith(t, opts)
	alice := a.register(t, "alice")
	login := func(s *testServer, ip, password string) apiResponse {
		return s.doFrom(t, apitest.From(ip), "POST", "/api/v1/auth/login", "", map[string]any{"username": strings.ToUpper(alice.Username), "password": password})
	}
	for i := range 5 {
		requireAPIError(t, login(a, fmt.Sprint("192.0.2.", i), "wrong password"), http.StatusUnauthorized, "invalid_credentials")
	}
	work := passwordWork(t, b)
	apitest.RequireRetryAfter(t, login(b, "192.0.2.200", fixturePassword), 1, 1)
	require.Equal(t, work, passwordWork(t, b), "the password is not checked while the name waits")

	time.Sleep(1100 * time.Millisecond)
	requireAPIError(t, login(a, "192.0.2.9", "wrong password"), http.StatusUnauthorized, "invalid_credentials")
	apitest.RequireRetryAfter(t, login(b, "192.0.2.10", fixturePassword), 2, 2)
	time.Sleep(2100 * time.Millisecond)

	// Many attempts at once while waits apply: one is checked.
	work = passwordWork(t, a)
	var wg sync.WaitGroup
	statuses := make([]int, 40)
	for i := range statuses {
		wg.Go(func() { statuses[i] = login(a, fmt.Sprint("192.0.2.", 50+i), "wrong password").Status })
	}
	wg.Wait()
	refused := 0
	for _, st := range statuses {
		if st == http.StatusTooManyRequests {
			refused++
		}
	}
	require.Equal(t, 39, refused, "%v", statuses)
	require.Equal(t, work+1, passwordWork(t, a))

	// The wait after that failure is 4 s; then the right password works,
	// and the count starts again.
	time.Sleep(4100 * time.Millisecond)
	r := login(b, "192.0.2.11", fixturePassword)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	for i := range 5 {
		requireAPIError(t, login(a, "192.0.2.12", fmt.Sprint("wrong ", i)), http.StatusUnauthorized, "invalid_credentials")
	}
	apitest.RequireRetryAfter(t, login(a, "192.0.2.12", fixturePassword), 1, 1)
	require.Greater(t, metricValue(t, a, `switchboard_auth_refused_total{limit="username"}`), 0.0)
}

// TestConnectionCap: at most MaxConnsPerUser sockets per user on all
// nodes together; one more is answered rate_limited and closed 1008.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	nodes := newTestCluster(t, 2, func(c *hub.Config) { c.MaxConnsPerUser = 3 })
	a, b := nodes[0], nodes[1]
	bob, carol := a.register(t, "bob"), a.register(t, "carol")
	first := a.dialWS(t, bob.Token)
	first.ready()
	a.dialWS(t, bob.Token).ready()
	b.dialWS(t, bob.Token).ready()

	over := b.dialWS(t, bob.Token)
	objs, code := drainUntilClosed(t, over, 5*time.Second)
	require.Equal(t, websocket.StatusPolicyViolation, code)
	require.Len(t, objs, 1, "no ready: %v", objs)
	require.Equal(t, "rate_limited", objs[0]["code"])
	b.dialWS(t, carol.Token).ready() // another user has a cap of their own

	// Closing one makes room for one, on any node.
	require.NoError(t, first.Conn.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool {
		c := b.dialWS(t, bob.Token)
		obj, err := c.nextErr(5 * time.Second)
		return err == nil && obj["type"] == "ready"
	}, 5*time.Second, 50*time.Millisecond)
}

// TestConnectionCapAfterNodeDeath: connections of a node that died without
// cleanup stop counting once their presence entries expire.
func TestConnectionCapAfterNodeDeath(t *testing.T) {
	t.Parallel()
	prefix := brokertest.Prefix()
	s := newTestServerWith(t, nodeOptions{redisPrefix: prefix, tune: func(c *hub.Config) { c.MaxConnsPerUser = 2 }})
	bob := s.register(t, "bob")

	// Two connections on a node that was then killed: entries nobody
	// refreshes, with a short life.
	client := brokertest.Current().Client()
	defer client.Close()
	dead, err := presence.New(presence.Config{Redis: client, Prefix: prefix, TTL: 700 * time.Millisecond})
	require.NoError(t, err)
	for i := range 2 {
		_, allowed, err := dead.Connect(context.Background(), bob.ID, fmt.Sprint("dead-", i), 2)
		require.NoError(t, err)
		require.True(t, allowed)
	}
	_, code := drainUntilClosed(t, s.dialWS(t, bob.Token), 5*time.Second)
	require.Equal(t, websocket.StatusPolicyViolation, code)

	time.Sleep(800 * time.Millisecond)
	s.dialWS(t, bob.Token).ready()
}
