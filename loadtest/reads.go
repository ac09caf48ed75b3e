package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The reads scenario: one "hot" room with Seed messages (every 10th a
// reply to the first), read by every reader over HTTP in six ways, and
// ColdRooms rooms with ColdMessages each, each read once (never cached
// before). The server's history cache keeps the newest 256 messages of a
// room, so the hot room's old pages (before_seq far back, since an old
// instant, the replies of the oldest message) are read past it.

// readKind is one kind of history request and its share of the hot reads.
type readKind struct {
	name   string
	weight int
}

// readKinds are the hot room's requests.
var readKinds = []readKind{
	{"latest", 30},            // ?limit=50: the newest page, in the cache
	{"before_seq recent", 15}, // a page within the newest 256
	{"before_seq old", 15},    // a page older than the cache window
	{"since old", 10},         // ?since= an instant older than the window
	{"thread", 15},            // GET /messages/{first}: the oldest message and its replies
	{"thread page", 15},       // GET /messages/{first}/replies?after_seq=…
}

// coldKind names the reads of cold rooms.
const coldKind = "cold room (first read)"

// readParams shape the reads scenario.
type readParams struct {
	Users        int     // readers; each owns ColdRooms/Users cold rooms
	Seed         int     // messages in the hot room
	ColdRooms    int     // rooms each read once
	ColdMessages int     // messages in each cold room
	Rate         float64 // open loop: requests/s, all readers together
	ColdShare    float64 // share of Rate for cold rooms (capped at ColdRooms over the duration)
	Arrival      arrival
	Loop         string
	Duration     time.Duration
	MaxRequests  int
	MaxLateness  time.Duration
}

// readSession is a seeded hot room, the cold rooms and their readers.
type readSession struct {
	e        *env
	readers  []account
	hot      string
	parent   string
	lastSeq  int64
	times    []time.Time // created_at by seq-1 of the hot room's messages
	replies  []int64     // seqs of the replies to parent
	cold     [][]string  // per reader: its cold rooms
	nextCold []int       // per reader: its next unread cold room (closed loop)
}

// seedRate is how fast a seeding connection sends: under the per-connection
// budget of 10 a second.
const seedRate = 9

// seedConns is how many connections an account seeds over at once (each
// has its own send budget; the cap is 20 per user).
const seedConns = 3

// prepareReads registers the readers and a few seeders, fills the cold
// rooms (each reader its own) and then the hot room, all within the abuse
// limits: at most 9 sends a second per connection, seedConns connections
// per account, and at most 12 HTTP writes per account.
func prepareReads(ctx context.Context, e *env, p readParams) (*readSession, error) {
	s := &readSession{e: e}
	first := e.nodes[0]
	const seeders = 12
	fmt.Fprintf(logOut, "setup: registering %d readers and %d seeders…\n", p.Users, seeders)
	accts, err := first.registerMany(ctx, e.run+"-r", p.Users+seeders)
	if err != nil {
		return nil, err
	}
	s.readers, accts = accts[:p.Users], accts[p.Users:]
	owner := accts[0]

	// Cold rooms, each reader its share, seeded over its own connections
	// before the reader joins the hot room (so that nothing of the hot
	// room reaches them).
	fmt.Fprintf(logOut, "setup: %d cold rooms of %d messages…\n", p.ColdRooms, p.ColdMessages)
	s.cold = make([][]string, p.Users)
	s.nextCold = make([]int, p.Users)
	errs := make([]error, p.Users)
	sem := make(chan struct{}, 40)
	var wg sync.WaitGroup
	for u, a := range s.readers {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			n := e.nodes[u%len(e.nodes)]
			var jobs []seedJob
			for k := u; k < p.ColdRooms; k += p.Users {
				id, err := n.createRoom(ctx, a, fmt.Sprintf("%s-cold-%d", e.run, k))
				if err != nil {
					errs[u] = err
					return
				}
				s.cold[u] = append(s.cold[u], id)
				for m := range p.ColdMessages {
					jobs = append(jobs, seedJob{room: id, body: fmt.Sprintf("cold %d message %d", k, m)})
				}
			}
			_, errs[u] = seedAll(ctx, e, n, []account{a}, jobs)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	// The hot room: the first message alone (the thread's parent), then the
	// rest from every seeder's connections, every 10th a reply.
	fmt.Fprintf(logOut, "setup: the hot room, %d messages…\n", p.Seed)
	if s.hot, err = first.createRoom(ctx, owner, e.run+"-hot"); err != nil {
		return nil, err
	}
	if err := first.joinAll(ctx, s.hot, append(accts[1:], s.readers...)); err != nil {
		return nil, err
	}
	acks, err := seedAll(ctx, e, first, []account{owner}, []seedJob{{room: s.hot, body: "hot message 0"}})
	if err != nil {
		return nil, err
	}
	s.parent = acks[0].Message.ID
	var jobs []seedJob
	for i := 1; i < p.Seed; i++ {
		j := seedJob{room: s.hot, body: fmt.Sprintf("hot message %d", i)}
		if i%10 == 9 {
			j.parent = s.parent
		}
		jobs = append(jobs, j)
	}
	rest, err := seedAll(ctx, e, first, accts, jobs)
	if err != nil {
		return nil, err
	}
	acks = append(acks, rest...)
	s.times = make([]time.Time, len(acks))
	for i, a := range acks {
		if seq := a.Message.Seq; seq >= 1 && int(seq) <= len(acks) {
			s.times[seq-1] = a.Message.CreatedAt
		}
		s.lastSeq = max(s.lastSeq, a.Message.Seq)
		if i%10 == 9 {
			s.replies = append(s.replies, a.Message.Seq)
		}
	}
	return s, nil
}

// path returns the request of kind for a reader, with rng choosing the
// page.
func (s *readSession) path(kind string, rng *rand.Rand) string {
	hot := "/api/v1/rooms/" + s.hot + "/messages?limit=50"
	old := max(s.lastSeq-400, 52) // pages below this are older than the newest 256
	switch kind {
	case "before_seq recent":
		return hot + "&before_seq=" + strconv.FormatInt(s.lastSeq-rng.Int64N(min(150, s.lastSeq)), 10)
	case "before_seq old":
		return hot + "&before_seq=" + strconv.FormatInt(51+rng.Int64N(max(old-51, 1)), 10)
	case "since old":
		i := rng.IntN(int(min(old, int64(len(s.times)))))
		if t := s.times[i]; !t.IsZero() {
			return hot + "&since=" + url.QueryEscape(t.Format(time.RFC3339Nano))
		}
		return hot
	case "thread":
		return "/api/v1/messages/" + s.parent
	case "thread page":
		after := int64(0)
		if len(s.replies) > 0 {
			after = s.replies[rng.IntN(len(s.replies))]
		}
		return "/api/v1/messages/" + s.parent + "/replies?limit=50&after_seq=" + strconv.FormatInt(after, 10)
	}
	return hot
}

// pickKind chooses a hot kind by weight.
func pickKind(rng *rand.Rand) string {
	total := 0
	for _, k := range readKinds {
		total += k.weight
	}
	n := rng.IntN(total)
	for _, k := range readKinds {
		if n -= k.weight; n < 0 {
			return k.name
		}
	}
	return readKinds[0].name
}

// readStats collects a measured phase of reads.
type readStats struct {
	byKind    map[string]*latencies
	all, late latencies
	ok        atomic.Int64
	achieved  atomic.Int64 // answered before the end
	codes     *codeCounts
	end       time.Time
}

func newReadStats() *readStats {
	st := &readStats{byKind: map[string]*latencies{coldKind: {}}, codes: &codeCounts{n: map[string]int{}}}
	for _, k := range readKinds {
		st.byKind[k.name] = &latencies{}
	}
	return st
}

// get does one request of kind and records it against from (the intended
// time in open loop, the actual one in closed loop).
func (st *readStats) get(ctx context.Context, n *node, token, kind, path string, from time.Time) {
	err := n.do(ctx, "GET", path, token, nil, nil)
	now := time.Now()
	if err != nil {
		st.codes.add(errorCode(err))
		return
	}
	d := now.Sub(from)
	st.byKind[kind].add(d)
	st.all.add(d)
	st.ok.Add(1)
	if now.Before(st.end) {
		st.achieved.Add(1)
	}
}

// measure reads for p.Duration from start, open or closed loop, and
// reports into res.
func (s *readSession) measure(ctx context.Context, p readParams, res *Result) {
	st := newReadStats()
	countersBefore := serverCounters(ctx, s.e.nodes)
	before := sampleCPU(ctx, s.e.nodes)
	start := time.Now().Add(50 * time.Millisecond)
	end := start.Add(p.Duration)
	st.end = end
	var requests atomic.Int64
	take := func() bool { return p.MaxRequests == 0 || requests.Add(1) <= int64(p.MaxRequests) }
	var wg, inflight sync.WaitGroup
	coldRate := 0.0
	if p.Loop == openLoop {
		coldRate = min(p.Rate*p.ColdShare, float64(p.ColdRooms)/p.Duration.Seconds())
		hotRate := p.Rate - coldRate
		sem := make(chan struct{}, 8192)
		fire := func(rng *rand.Rand, n *node, token string, kind func() (string, string)) func(time.Time) bool {
			return func(intended time.Time) bool {
				if !take() {
					return false
				}
				select {
				case sem <- struct{}{}:
				case <-ctx.Done():
					return false
				}
				k, path := kind()
				inflight.Go(func() {
					defer func() { <-sem }()
					st.get(ctx, n, token, k, path, intended)
				})
				return true
			}
		}
		for u, a := range s.readers {
			n := s.e.nodes[u%len(s.e.nodes)]
			rng := rand.New(rand.NewPCG(7, uint64(u)))
			hot := newSchedule(p.Arrival, hotRate/float64(len(s.readers)), start, rng)
			wg.Go(func() {
				pace(ctx, realClock{}, hot, end, 0, func(d time.Duration) { st.late.add(d) }, fire(rng, n, a.Token, func() (string, string) {
					k := pickKind(rng)
					return k, s.path(k, rng)
				}))
			})
			crng := rand.New(rand.NewPCG(8, uint64(u)))
			cold := newSchedule(p.Arrival, coldRate/float64(len(s.readers)), start, crng)
			rooms := s.cold[u]
			next := 0
			wg.Go(func() {
				pace(ctx, realClock{}, cold, end, len(rooms), func(d time.Duration) { st.late.add(d) }, fire(crng, n, a.Token, func() (string, string) {
					r := rooms[next]
					next++
					return coldKind, "/api/v1/rooms/" + r + "/messages?limit=50"
				}))
			})
		}
	} else {
		for u, a := range s.readers {
			n := s.e.nodes[u%len(s.e.nodes)]
			rng := rand.New(rand.NewPCG(7, uint64(u)))
			wg.Go(func() {
				for i := 0; time.Now().Before(end) && ctx.Err() == nil && take(); i++ {
					kind := pickKind(rng)
					path := s.path(kind, rng)
					if i%10 == 9 && s.nextCold[u] < len(s.cold[u]) {
						kind, path = coldKind, "/api/v1/rooms/"+s.cold[u][s.nextCold[u]]+"/messages?limit=50"
						s.nextCold[u]++
					}
					st.get(ctx, n, a.Token, kind, path, time.Now())
				}
			})
		}
	}
	wg.Wait()
	after := sampleCPU(ctx, s.e.nodes)
	inflight.Wait()
	secs := p.Duration.Seconds()
	res.CPU = cores(before, after)
	res.Seconds = secs
	ok := st.ok.Load()
	if p.Loop == openLoop {
		res.add("offered request rate", p.Rate, "req/s")
		res.add("of which cold rooms", coldRate, "req/s")
	}
	res.add("requests answered", float64(ok), "")
	res.add("achieved request rate", float64(st.achieved.Load())/secs, "req/s")
	var errs int
	for _, n := range st.codes.n {
		errs += n
	}
	res.add("errors", float64(errs), "")
	if ok > 0 {
		res.add("server CPU per request", res.CPU["server"]*secs/float64(ok)*1e6, "µs")
	}
	from := "(from intended send)"
	if p.Loop != openLoop {
		from = "(from actual send)"
	}
	res.Latencies["read (all) "+from] = st.all.summary()
	for k, l := range st.byKind {
		if s := l.summary(); s.Count > 0 {
			res.Latencies["read "+k] = s
		}
	}
	if p.Loop == openLoop {
		l := st.late.summary()
		res.Latencies["generator lateness"] = l
		res.Notes = append(res.Notes, generatorNote(l, keptUp(l, p.MaxLateness)))
	}
	if len(st.codes.n) > 0 {
		res.Notes = append(res.Notes, "errors by code: "+sortedCodes(st.codes.n))
	}
	addCacheHitRate(res, countersBefore, serverCounters(ctx, s.e.nodes))
	res.Notes = append(res.Notes, fmt.Sprintf("hot room: %d messages (the cache holds the newest 256), every 10th a reply to the first; %d cold rooms of %d messages, each read at most once",
		s.lastSeq, p.ColdRooms, p.ColdMessages))
	res.Failed = ok == 0
}

// runReads seeds, then reads.
func runReads(ctx context.Context, e *env, p readParams) (*Result, error) {
	s, err := prepareReads(ctx, e, p)
	if err != nil {
		return nil, err
	}
	res := newResult("reads", e.nodes, map[string]any{"users": p.Users, "seed_messages": p.Seed, "cold_rooms": p.ColdRooms,
		"cold_messages": p.ColdMessages, "rate": p.Rate, "arrival": string(p.Arrival), "duration": p.Duration.String(), "max_requests": p.MaxRequests})
	res.Loop = p.Loop
	e.startMeasuring()
	s.measure(ctx, p, res)
	return res, nil
}

// addCacheHitRate adds the share of history reads (pages and threads) the
// servers answered from their cache between two serverCounters.
func addCacheHitRate(res *Result, before, after map[string]float64) {
	const series = `switchboard_cache_lookups_total{cache="history",result="%s"}`
	hits := after[fmt.Sprintf(series, "hit")] - before[fmt.Sprintf(series, "hit")]
	misses := after[fmt.Sprintf(series, "miss")] - before[fmt.Sprintf(series, "miss")]
	if hits+misses > 0 {
		res.add("history cache hit rate", 100*hits/(hits+misses), "%")
		res.add("history cache misses", misses, "")
	}
}

// serverCounters scrapes every node and sums each metric over them.
func serverCounters(ctx context.Context, nodes []*node) map[string]float64 {
	sums := map[string]float64{}
	for _, n := range nodes {
		m, err := n.scrape(ctx)
		if err != nil {
			continue
		}
		for k, v := range m {
			sums[k] += v
		}
	}
	return sums
}

// frameCounts is what the servers wrote between two scrapes of their
// counters: how well a connection's messages share its frames.
type frameCounts struct {
	Frames           float64 `json:"ws_frames_out"`
	PerStoredMessage float64 `json:"per_stored_message"` // frames written per message stored
	MessagesPerFrame float64 `json:"messages_per_frame"` // messages and events written per frame
}

// framesBetween reads frameCounts from serverCounters taken before and
// after; nil when the servers wrote no frame (or exposed no counters).
func framesBetween(before, after map[string]float64) *frameCounts {
	delta := func(name string) float64 { return after[name] - before[name] }
	frames := delta("switchboard_ws_frames_out_total")
	if frames <= 0 {
		return nil
	}
	fc := &frameCounts{Frames: frames, MessagesPerFrame: delta("switchboard_messages_out_total") / frames}
	if stored := delta("switchboard_messages_in_total"); stored > 0 {
		fc.PerStoredMessage = frames / stored
	}
	return fc
}

// seedJob is one message to store.
type seedJob struct {
	room, body, parent string
}

// seedAll stores jobs over seedConns connections of each account (jobs
// dealt round-robin over the connections), each connection sending one at
// a time and at most seedRate a second, and returns the acks in the jobs'
// order.
func seedAll(ctx context.Context, e *env, n *node, accts []account, jobs []seedJob) ([]reply, error) {
	conns := len(accts) * seedConns
	if len(jobs) < conns {
		conns = max(len(jobs), 1)
	}
	acks := make([]reply, len(jobs))
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			var mine []int
			for j := c; j < len(jobs); j += conns {
				mine = append(mine, j)
			}
			errs[c] = seedOver(ctx, e, n, accts[c%len(accts)], jobs, mine, acks)
		})
	}
	wg.Wait()
	return acks, errors.Join(errs...)
}

// seedOver sends jobs[idx...] over one new connection of acct, waiting for
// each ack, into acks[idx]. A rate_limited answer is waited out and sent
// again.
func seedOver(ctx context.Context, e *env, n *node, acct account, jobs []seedJob, idx []int, acks []reply) error {
	if len(idx) == 0 {
		return nil
	}
	ws, err := e.dialer.dialFrom(ctx, n, acct, idx[0])
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	answers := make(chan reply, 16)
	go func() {
		defer close(answers)
		_ = readLines(ws, func(line []byte) {
			if t := frameType(line); t == "ack" || t == "error" {
				if rp, ok := decodeReply(line); ok {
					answers <- rp
				}
			}
		})
	}()
	var last time.Time
	for _, j := range idx {
		for attempt := 0; ; attempt++ {
			if wait := time.Until(last.Add(time.Second / seedRate)); wait > 0 {
				time.Sleep(wait)
			}
			last = time.Now()
			f := map[string]string{"type": "send", "id": strconv.Itoa(j), "room": jobs[j].room, "body": jobs[j].body}
			if jobs[j].parent != "" {
				f["parent_id"] = jobs[j].parent
			}
			raw, _ := json.Marshal(f)
			if err := ws.Write(ctx, websocket.MessageText, raw); err != nil {
				return err
			}
			var a reply
			select {
			case rp, ok := <-answers:
				if !ok {
					return fmt.Errorf("seed: connection closed")
				}
				a = rp
			case <-time.After(15 * time.Second):
				return fmt.Errorf("seed message %d: no answer", j)
			case <-ctx.Done():
				return ctx.Err()
			}
			if a.Type == "ack" {
				acks[j] = a
				break
			}
			if a.Code != "rate_limited" || attempt > 5 {
				return fmt.Errorf("seed message %d: %s %s", j, a.Type, a.Code)
			}
			time.Sleep(time.Duration(a.RetryAfterMs+10) * time.Millisecond)
		}
	}
	return nil
}

// decodeReply decodes an ack, error or subscribed object. An error's
// "message" is a string where an ack's is an object: the rest still
// decodes.
func decodeReply(line []byte) (reply, bool) {
	var rp reply
	err := json.Unmarshal(line, &rp)
	var typeErr *json.UnmarshalTypeError
	if err != nil && !errors.As(err, &typeErr) {
		return rp, false
	}
	return rp, rp.Type != ""
}
