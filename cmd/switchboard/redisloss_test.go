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

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack/slacktest"
	"github.com/switchboard-chat/switchboard/internal/redistopo"
)

// The tests of this file make Redis lose everything it holds (SPEC §15: a
// restart without persistence): a private redis-server (internal/redistopo)
// is killed and started again, empty, on the same address.

// journaled counts the job journal's records of type typ.
func (s *testServer) journaled(t *testing.T, typ string) int {
	t.Helper()
	var n int
	require.NoError(t, s.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM job_journal WHERE type = $1`, typ).Scan(&n))
	return n
}

// queued counts the tasks Redis holds that are to run.
func (s *testServer) queued(t *testing.T) int {
	t.Helper()
	stats, err := s.node.queue.Stats(t.Context())
	require.NoError(t, err)
	n := 0
	for _, q := range stats {
		n += q.Pending + q.Active + q.Scheduled + q.Retry
	}
	return n
}

// counter reads one series of /metrics, 0 while it was never written.
func (s *testServer) counter(t *testing.T, series string) float64 {
	t.Helper()
	r := s.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, line := range strings.Split(string(r.Raw), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	return 0
}

// runWorkers runs the node's outbox relay and job workers until t ends.
func (s *testServer) runWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, s.node.workers.run(ctx))
	}()
	t.Cleanup(func() { cancel(); <-done }) // before the node stops
}

// postsPerText counts the fake's posts by text.
func postsPerText(fake *slacktest.API) map[string]int {
	n := map[string]int{}
	for _, p := range fake.Accepted() {
		n[p.Text]++
	}
	return n
}

// TestJobsSurviveRedisLosingEverything: messages stored in a Slack-bridged
// room, their fanout jobs relayed from the outbox into Redis, then Redis
// loses everything before any job ran. Workers started on the empty Redis
// put every job back from the journal: each message is posted to Slack
// exactly once. They do so at once, not 30 s (JournalGrace) after each
// job's time: the sweep sees that Redis lost its data.
func TestJobsSurviveRedisLosingEverything(t *testing.T) {
	t.Parallel()
	rs := redistopo.Single(t)
	fake := slacktest.New(t, testSlackBotToken)
	s := newTestServerWith(t, nodeOptions{redisURL: "redis://" + rs.Addr(), slack: fake, noWorkers: true,
		tuneJobs: func(c *jobs.Config) { c.SweepInterval = 200 * time.Millisecond }})
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, chat.Public)
	s.bridge(t, room, "C0DURABLE")

	const n = 100
	for i := range n {
		r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": fmt.Sprint("message ", i)})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	}
	// The relay alone (no workers yet) moves the outbox into the queue.
	ctx, stopRelay := context.WithCancel(context.Background())
	relayed := make(chan struct{})
	go func() { defer close(relayed); s.node.workers.relay.Run(ctx) }()
	eventually(t, "the outbox relayed", func() bool {
		var rows int
		require.NoError(t, s.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM outbox`).Scan(&rows))
		return rows == 0
	})
	stopRelay()
	<-relayed
	require.Equal(t, n, s.queued(t), "every fanout job is in Redis")
	require.Equal(t, n, s.journaled(t, "message:fanout"), "and in the journal")

	rs.Kill(t)
	rs.Restart(t)
	restarted := time.Now()
	require.Zero(t, s.queued(t), "Redis lost them")

	s.runWorkers(t)
	eventually(t, "every message posted", func() bool { return len(fake.Accepted()) >= n })
	took := time.Since(restarted)
	time.Sleep(time.Second) // room for a second post to show up
	posts := postsPerText(fake)
	for i := range n {
		require.Equal(t, 1, posts[fmt.Sprint("message ", i)], "message %d posted once", i)
	}
	require.Len(t, fake.Accepted(), n)
	eventually(t, "the journal emptied", func() bool {
		return s.journaled(t, "message:fanout")+s.journaled(t, "slack:post") == 0
	})
	require.Equal(t, float64(n), metricValue(t, s, `switchboard_jobs_restored_total{type="message:fanout"}`))
	t.Logf("jobs: %d fanout jobs enqueued and lost with Redis; %d posted to Slack, 0 lost, 0 twice; the last %s after the restart",
		n, len(fake.Accepted()), took.Round(time.Millisecond))
}

// failingJournal fails the first FinishJob of each key that starts with
// prefix, as when Postgres is unreachable just as a job ends.
type failingJournal struct {
	jobs.Journal
	prefix string
	mu     sync.Mutex
	failed map[string]bool
}

func (j *failingJournal) FinishJob(ctx context.Context, key, reason string) error {
	j.mu.Lock()
	fail := strings.HasPrefix(key, j.prefix) && !j.failed[key]
	j.failed[key] = true
	j.mu.Unlock()
	if fail {
		return fmt.Errorf("finish job: %w", chat.ErrUnavailable)
	}
	return j.Journal.FinishJob(ctx, key, reason)
}

// TestJobDoneMarkLostRunsAgainWithoutSendingTwice: a Slack post went out
// but its journal record could not be settled; Redis then loses the task
// too. The sweep puts the job back and it runs again, and its claim keeps
// it from posting a second time.
func TestJobDoneMarkLostRunsAgainWithoutSendingTwice(t *testing.T) {
	t.Parallel()
	rs := redistopo.Single(t)
	fake := slacktest.New(t, testSlackBotToken)
	s := newTestServerWith(t, nodeOptions{redisURL: "redis://" + rs.Addr(), slack: fake, tuneJobs: func(c *jobs.Config) {
		// Long enough that no sweep settles the record from what Redis
		// says of the done task before Redis loses it.
		c.JournalGrace, c.SweepInterval = 5*time.Second, 100*time.Millisecond
		c.Journal = &failingJournal{Journal: c.Journal, prefix: "slack-post:", failed: map[string]bool{}}
	}})
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, chat.Public)
	s.bridge(t, room, "C0DURABLE")
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "once"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	eventually(t, "posted", func() bool { return len(fake.Accepted()) == 1 })
	eventually(t, "the post's run ended", func() bool {
		return s.counter(t, `switchboard_jobs_runs_total{outcome="succeeded",type="slack:post"}`) == 1
	})
	require.Equal(t, 1, s.journaled(t, "slack:post"), "its record was not settled")

	rs.Kill(t)
	rs.Restart(t)
	eventually(t, "the post job ran again", func() bool {
		return s.counter(t, `switchboard_jobs_runs_total{outcome="succeeded",type="slack:post"}`) == 2
	})
	eventually(t, "and its record is settled", func() bool { return s.journaled(t, "slack:post") == 0 })
	require.Equal(t, 1.0, metricValue(t, s, `switchboard_jobs_restored_total{type="slack:post"}`))
	time.Sleep(300 * time.Millisecond)
	require.Len(t, fake.Accepted(), 1, "posted once")
}

// TestPresenceRecoversAfterRedisLosesEverything: Redis loses every
// presence entry while users are connected, and one of them disconnects
// while Redis is down. Once Redis answers again, the next refresh makes
// presence right: the connected users are online again (and announced so),
// the one who left is offline (and announced so).
func TestPresenceRecoversAfterRedisLosesEverything(t *testing.T) {
	t.Parallel()
	const refresh = 500 * time.Millisecond
	rs := redistopo.Single(t)
	s := newTestServerWith(t, nodeOptions{redisURL: "redis://" + rs.Addr(), tune: func(c *hub.Config) { c.PresenceRefresh = refresh }})
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	room := s.createRoom(t, alice, chat.Private)
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, room, carol)
	online := func() []string {
		r := s.do(t, "GET", "/api/v1/rooms/"+room+"/presence", bob.Token, nil)
		if r.Status != http.StatusOK {
			return nil // Redis not back yet
		}
		var names []string
		for _, u := range r.Body["online"].([]any) {
			names = append(names, u.(map[string]any)["username"].(string))
		}
		return names
	}

	watcher := s.subscribedClient(t, bob, 1)
	watcher.WithPresence = true
	s.subscribedClient(t, alice, 1)
	require.Equal(t, "online", watcher.nextOf("presence")["status"])
	carolWS := s.subscribedClient(t, carol, 1)
	require.Equal(t, "online", watcher.nextOf("presence")["status"])
	require.ElementsMatch(t, []string{alice.Username, bob.Username, carol.Username}, online())

	rs.Kill(t)
	carolWS.Conn.CloseNow() // her cleanup fails: Redis is down
	time.Sleep(2 * refresh) // refreshes fail meanwhile
	restarted := time.Now() // it answers a few milliseconds later
	rs.Restart(t)

	got := map[string]string{}
	for len(got) < 2 {
		ev, err := nextOfWithin(watcher, 10*refresh, "presence", "message")
		require.NoError(t, err, "presence events after the restart: %v", got)
		got[ev["user"].(map[string]any)["username"].(string)] = ev["status"].(string)
	}
	announced := time.Since(restarted)
	require.Equal(t, map[string]string{alice.Username: "online", carol.Username: "offline"}, got)
	require.ElementsMatch(t, []string{alice.Username, bob.Username}, online())
	right := time.Since(restarted)
	require.Less(t, right, 3*refresh+2*time.Second, "right within a refresh or so")
	t.Logf("presence: announced %s after the restart (refresh every %s), right on GET .../presence %s after it",
		announced.Round(time.Millisecond), refresh, right.Round(time.Millisecond))
}

// TestEndedSessionsSurviveRedisLosingEverything: a session that ended
// (logout) stays ended after Redis lost everything: its access token is
// refused again once the node has written the ended sessions back from
// Postgres, while the user's other session goes on.
func TestEndedSessionsSurviveRedisLosingEverything(t *testing.T) {
	t.Parallel()
	const rebuild = 300 * time.Millisecond
	rs := redistopo.Single(t)
	s := newTestServerWith(t, nodeOptions{redisURL: "redis://" + rs.Addr(), denylistRebuild: rebuild})
	alice := s.register(t, "alice")
	other := s.login(t, alice.Username, fixturePassword)
	require.Equal(t, http.StatusNoContent, s.do(t, "POST", "/api/v1/auth/logout", alice.Token, nil).Status)
	requireAPIError(t, s.do(t, "GET", "/api/v1/me", alice.Token, nil), http.StatusUnauthorized, "unauthorized")

	rs.Kill(t)
	rs.Restart(t)
	restarted := time.Now()
	eventually(t, "the other session works again", func() bool {
		return s.do(t, "GET", "/api/v1/me", other.Token, nil).Status == http.StatusOK
	})
	for {
		r := s.do(t, "GET", "/api/v1/me", alice.Token, nil)
		if r.Status == http.StatusUnauthorized {
			break
		}
		require.Less(t, time.Since(restarted), 10*rebuild, "the ended session is refused again within a rebuild or so")
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("ended session refused again %s after the restart (rebuild every %s)", time.Since(restarted).Round(time.Millisecond), rebuild)
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/api/v1/me", other.Token, nil).Status)
}
