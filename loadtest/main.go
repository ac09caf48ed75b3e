// Command loadtest drives Switchboard servers over real HTTP and WebSocket
// connections on loopback and reports throughput, latency and the server's
// cost. Every run is bounded in time and count; it prints a summary table
// and writes JSON.
//
//	bin/loadtest -spawn 2 -server bin/switchboard -scenario writes -rate 2000 -duration 10s
//	bin/loadtest -spawn 2 -server bin/switchboard -scenario sweep -rates 1k,2k,3k,4k -sweep-files /tmp/sweep
//	bin/loadtest -scenario suite -server bin/switchboard -out docs/performance
//
// Scenarios: reads, writes (-http for HTTP POST), mixed, fanout and sweep
// run open loop by default (every connection or reader on a schedule of
// its own, latency from the intended send time; -loop closed for the first
// version's closed loop, with the servers' abuse limits off); connections;
// suite, which starts fresh servers and runs a short version of each, then
// writes a Markdown report and SVG charts; authflood, a real user's login
// and /me latencies under a password-guessing flood, with the auth limits
// off and then on.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		stop()
		log.Fatalf("loadtest: %v", err)
	}
}

// flags are every option of the command line.
type flags struct {
	scenario    string
	nodes       string
	jsonPath    string
	duration    time.Duration
	users       int
	rooms       int
	subscribers int
	interval    time.Duration
	window      int
	http        bool
	conns       int
	hold        time.Duration
	sourceIPs   int
	maxCount    int
	updates     float64
	seed        int
	attackers   int
	// open loop
	loop        string
	rate        float64
	arrival     string
	rates       string
	pause       time.Duration
	drain       time.Duration
	maxLateness time.Duration
	stopBelow   float64
	roomSizes   string
	bigRoom     int
	bigShare    float64
	maxConnRate float64
	readRate    float64
	coldRooms   int
	coldMsgs    int
	senders     int
	limits      string
	sweepFiles  string
	render      string
	// suite
	serverBin    string
	out          string
	profiles     string
	databaseURL  string
	redisURL     string
	redisCluster string
	suiteConns   int
	spawn        int
	logs         string
	cpuProfile   string
}

func run(ctx context.Context, args []string) error {
	var f flags
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "", "reads, writes, mixed, fanout, sweep, connections, authflood or suite")
	fs.StringVar(&f.nodes, "nodes", "http://127.0.0.1:8080", "comma-separated base URLs of the nodes to spread clients over (loopback only)")
	fs.StringVar(&f.jsonPath, "json", "", "write the result as JSON to this file")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to read, write or send (sweep: each point)")
	fs.IntVar(&f.users, "users", 0, "users: writes, mixed, sweep: at least this many, one connection each (default 550; raised so that each stays under its limits); "+
		"reads: readers (default 100); fanout: accounts per room (default 100); connections: accounts the connections share (default 200); closed-loop writes: sending accounts (default 32)")
	fs.IntVar(&f.rooms, "rooms", 1, "fanout: rooms; closed-loop writes: rooms (user i writes to room i%rooms)")
	fs.IntVar(&f.subscribers, "subscribers", 100, "fanout: member connections per room")
	fs.DurationVar(&f.interval, "interval", 10*time.Millisecond, "fanout: one message per room every interval, all its senders together")
	fs.IntVar(&f.senders, "senders", 20, "fanout: connections per room that also send (each at its share, under the 10/s budget)")
	fs.IntVar(&f.window, "window", 4, "closed-loop writes: WebSocket sends in flight per connection")
	fs.BoolVar(&f.http, "http", false, "writes, sweep: send with HTTP POST instead of WebSocket")
	fs.IntVar(&f.conns, "conns", 1000, "connections: how many to open and hold")
	fs.DurationVar(&f.hold, "hold", 5*time.Second, "connections: how long to hold them")
	fs.IntVar(&f.sourceIPs, "source-ips", 1, "dial from 127.0.0.1..127.0.0.N, to hold more than ~28k connections")
	fs.IntVar(&f.maxCount, "max", 0, "bound on requests (reads) or messages (writes, each sweep point; fanout: per room); 0: only -duration")
	fs.IntVar(&f.seed, "seed", 2000, "reads: messages in the hot room (the server caches the newest 256 of a room)")
	fs.IntVar(&f.attackers, "attackers", 40, "authflood: concurrent wrong-password logins")
	fs.StringVar(&f.loop, "loop", openLoop, `"open" (on a schedule, latency from the intended time) or "closed" (the first version: the next send when an answer comes; servers with the limits off)`)
	fs.Float64Var(&f.rate, "rate", 2000, "writes, mixed: messages/s offered, all connections together (open loop)")
	fs.StringVar(&f.arrival, "arrival", string(arrivalConstant), "open loop: constant (each stream evenly spaced, random phase) or poisson (exponential gaps)")
	fs.StringVar(&f.rates, "rates", "1k,2k,3k,4k,5k,6k,8k,10k", "sweep: offered rates, messages/s")
	fs.DurationVar(&f.pause, "pause", 5*time.Second, "sweep: pause between points, after each has drained")
	fs.DurationVar(&f.drain, "drain", 30*time.Second, "open loop: bound on the wait for the last answers and deliveries after sending")
	fs.DurationVar(&f.maxLateness, "max-lateness", 10*time.Millisecond, "open loop: the generator's p99 lateness above which a point is invalid")
	fs.Float64Var(&f.stopBelow, "stop-below", 0.5, "sweep: stop once achieved < this share of offered (0: run every rate)")
	fs.StringVar(&f.roomSizes, "room-sizes", joinInts(defaultHomeSizes), "writes, mixed, sweep: sizes of the home rooms users are split into, cycling")
	fs.IntVar(&f.bigRoom, "big-room", 50, "writes, mixed, sweep: every user also belongs to a shared room of about this many members (0: none)")
	fs.Float64Var(&f.bigShare, "big-share", 0.1, "writes, mixed, sweep: share of each user's messages sent into its shared room")
	fs.Float64Var(&f.updates, "updates", 0, "writes, mixed, sweep (WebSocket, open loop): share of sends replaced by an edit or a reaction of the sender's last message in the room (0-1)")
	fs.Float64Var(&f.maxConnRate, "max-conn-rate", 0, "open-loop writes: most messages/s per connection (HTTP: per user); more users are made to offer the rate (default: 8 constant, 6 poisson; HTTP half)")
	fs.Float64Var(&f.readRate, "read-rate", 4000, "reads, mixed: requests/s offered, all readers together (open loop)")
	fs.IntVar(&f.coldRooms, "cold-rooms", 1000, "reads: rooms read once each (never cached)")
	fs.IntVar(&f.coldMsgs, "cold-messages", 20, "reads: messages in each cold room")
	fs.StringVar(&f.limits, "limits", "", `-spawn: the servers' abuse limits, "default" or "off" (default: default, but off for -loop closed and the connection cap off for connections)`)
	fs.StringVar(&f.sweepFiles, "sweep-files", "", "sweep: write PREFIX.svg, PREFIX.md and PREFIX.json")
	fs.StringVar(&f.render, "render", "", "draw this result file again instead of measuring: with -sweep-files, its sweep; else the suite's report.md, latency.svg and sweep files into -out")
	fs.StringVar(&f.serverBin, "server", "bin/switchboard", "suite and -spawn: the switchboard binary to start")
	fs.StringVar(&f.out, "out", "docs/performance", "suite: directory for results.json, report.md, latency.svg and sweep.svg")
	fs.StringVar(&f.profiles, "profiles", "", "suite and -spawn: directory for 4 s CPU and heap profiles of the (first) server in each scenario's measured phase (sweep: each point) (off when empty)")
	fs.StringVar(&f.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"suite and -spawn: Postgres server to create the run's own database on (its path is replaced)")
	fs.StringVar(&f.redisURL, "redis-url", "", "suite and -spawn: Redis URL for the servers (default: theirs)")
	fs.StringVar(&f.redisCluster, "redis-cluster-addrs", "", "suite and -spawn: seed nodes of a Redis Cluster for the servers, instead of -redis-url")
	fs.IntVar(&f.suiteConns, "suite-conns", 19000, "suite: connections held by the single node (each is a file descriptor on both sides: mind ulimit -n)")
	fs.StringVar(&f.logs, "logs", "", "suite and -spawn: keep the servers' logs in this directory (default: a temporary one, removed)")
	fs.IntVar(&f.spawn, "spawn", 0, "start this many fresh nodes of -server (own database and Redis prefix) instead of using -nodes")
	fs.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator itself (the whole run) to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.cpuProfile != "" {
		stop, err := profileSelf(f.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	switch f.loop {
	case "open", openLoop:
		f.loop = openLoop
	case "closed", closedLoop:
		f.loop = closedLoop
	default:
		return fmt.Errorf("-loop %q: open or closed", f.loop)
	}
	if _, err := parseArrival(f.arrival); err != nil {
		return err
	}
	if f.render != "" {
		return render(f.render, f.sweepFiles, f.out)
	}
	raiseFileLimit()
	switch f.scenario {
	case "suite":
		return runSuite(ctx, &f)
	case "authflood":
		results, err := runAuthFlood(ctx, &f, authFloodParams{Attackers: f.attackers, Duration: f.duration,
			LoginEvery: 500 * time.Millisecond, ReadMeEvery: 100 * time.Millisecond})
		if err != nil {
			return err
		}
		for _, r := range results {
			r.print(os.Stdout)
		}
		if f.jsonPath != "" {
			return writeJSON(f.jsonPath, results)
		}
		return nil
	}
	var nodes []*node
	var profileStart, profileWait func()
	var debug []string
	limitsNote := "as the servers at -nodes were started (the load test does not know them)"
	var pointHook func(rate float64) func()
	if f.spawn > 0 {
		tmp, secret, err := spawnDir(&f)
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		profile, err := limitsFor(&f)
		if err != nil {
			return err
		}
		limitsNote = profile.note
		c, err := startCluster(ctx, &f, runID(), cmp.Or(f.logs, tmp), secret, f.spawn, profile)
		if err != nil {
			return err
		}
		defer c.stop()
		f.nodes = c.urls()
		debug = c.debugAddrs()
		if f.profiles != "" {
			profileStart, profileWait = profiler(ctx, c.servers[0].Debug, filepath.Join(f.profiles, f.scenario), 4)
			pointHook = pointProfiler(ctx, c.servers[0].Debug, filepath.Join(f.profiles, f.scenario))
		}
	}
	for _, u := range strings.Split(f.nodes, ",") {
		if u = strings.TrimSpace(u); u != "" {
			nodes = append(nodes, newNode(u))
		}
	}
	if len(nodes) == 0 {
		return fmt.Errorf("-nodes names no node")
	}
	e := &env{nodes: nodes, dialer: newDialer(f.sourceIPs), run: runID(), measuring: profileStart, debug: debug, pointStart: pointHook}
	res, err := runScenario(ctx, e, &f)
	if profileWait != nil {
		profileWait()
	}
	if err != nil {
		return err
	}
	res.Limits = limitsNote
	res.print(os.Stdout)
	if f.jsonPath != "" {
		if err := writeJSON(f.jsonPath, []*Result{res}); err != nil {
			return err
		}
	}
	if f.sweepFiles != "" && len(res.Points) > 0 {
		if err := writeSweepFiles(f.sweepFiles, res, sweepTitle(res)); err != nil {
			return err
		}
		fmt.Printf("\nwrote %[1]s.svg, %[1]s.md and %[1]s.json\n", f.sweepFiles)
	}
	if res.Failed {
		return fmt.Errorf("%s failed", res.title())
	}
	return nil
}

// limitsFor is the limit profile of the servers -spawn starts.
func limitsFor(f *flags) (limitProfile, error) {
	switch f.limits {
	case "default":
		return limitsDefault, nil
	case "off":
		return limitsOff, nil
	case "":
	default:
		return limitProfile{}, fmt.Errorf("-limits %q: default or off", f.limits)
	}
	switch {
	case f.scenario == "connections":
		return limitsManyConns, nil
	case f.loop == closedLoop:
		return limitsOff, nil
	}
	return limitsDefault, nil
}

// orDefault is v, or def when v is 0.
func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// shapeFor is the writes shape for f at up to maxRate msgs/s: at least
// -users users, and enough that each stays at or under its stream rate.
func shapeFor(f *flags, maxRate float64) (shapeParams, error) {
	sizes, err := parseSizes(f.roomSizes)
	if err != nil {
		return shapeParams{}, err
	}
	a, _ := parseArrival(f.arrival)
	per := f.maxConnRate
	if per <= 0 {
		per = maxStreamRate(a, f.http)
	}
	want := orDefault(f.users, 550)
	users := usersFor(maxRate, per, want)
	if users > want {
		fmt.Fprintf(logOut, "users: %d instead of %d, so that %.0f msgs/s is at most %g per %s\n", users, want, maxRate, per,
			map[bool]string{false: "connection", true: "user (HTTP)"}[f.http])
	}
	return shapeParams{Users: users, HomeSizes: sizes, BigSize: f.bigRoom, BigShare: f.bigShare}, nil
}

// pointFor is the open-loop point of f at rate.
func pointFor(f *flags, rate float64) pointParams {
	a, _ := parseArrival(f.arrival)
	return pointParams{Rate: rate, Arrival: a, HTTP: f.http, Duration: f.duration, Drain: f.drain,
		MaxLateness: f.maxLateness, MaxMessages: f.maxCount, Seed: 1, UpdateShare: f.updates}
}

// readsFor is the reads scenario of f.
func readsFor(f *flags, rate float64) readParams {
	a, _ := parseArrival(f.arrival)
	return readParams{Users: orDefault(f.users, 100), Seed: f.seed, ColdRooms: f.coldRooms, ColdMessages: f.coldMsgs,
		Rate: rate, ColdShare: 0.1, Arrival: a, Loop: f.loop, Duration: f.duration, MaxRequests: f.maxCount, MaxLateness: f.maxLateness}
}

// runScenario runs the one scenario f names.
func runScenario(ctx context.Context, e *env, f *flags) (*Result, error) {
	a, _ := parseArrival(f.arrival)
	switch f.scenario {
	case "reads":
		return runReads(ctx, e, readsFor(f, f.readRate))
	case "writes":
		if f.loop == closedLoop {
			return runWritesClosed(ctx, e, writeParams{Users: orDefault(f.users, 32), Rooms: f.rooms, Window: f.window, HTTP: f.http,
				Duration: f.duration, MaxMessages: f.maxCount})
		}
		sp, err := shapeFor(f, f.rate)
		if err != nil {
			return nil, err
		}
		return runWritesOpen(ctx, e, writesParams{Shape: sp, Point: pointFor(f, f.rate)})
	case "sweep":
		if f.loop == closedLoop {
			return nil, fmt.Errorf("the sweep is open loop only")
		}
		rates, err := parseRates(f.rates)
		if err != nil {
			return nil, err
		}
		sp, err := shapeFor(f, slices.Max(rates))
		if err != nil {
			return nil, err
		}
		return runSweep(ctx, e, sweepParams{Shape: sp, Rates: rates, Point: pointFor(f, 0), Pause: f.pause, StopBelow: f.stopBelow})
	case "mixed":
		if f.loop == closedLoop {
			return runMixed(ctx, e, readsFor(f, 0), nil, &writeParams{Users: orDefault(f.users, 32) / 2, Rooms: f.rooms, Window: f.window,
				Duration: f.duration, MaxMessages: f.maxCount / 2})
		}
		sp, err := shapeFor(f, f.rate)
		if err != nil {
			return nil, err
		}
		return runMixed(ctx, e, readsFor(f, f.readRate), &writesParams{Shape: sp, Point: pointFor(f, f.rate)}, nil)
	case "fanout":
		return runFanout(ctx, e, fanoutParams{Rooms: f.rooms, Subscribers: f.subscribers, UsersPerRoom: orDefault(f.users, 100),
			Senders: f.senders, Interval: f.interval, Duration: f.duration, MaxMessages: f.maxCount, Drain: f.drain,
			Arrival: a, Loop: f.loop, MaxLateness: f.maxLateness})
	case "connections":
		return runConnections(ctx, e, connParams{Conns: f.conns, Users: orDefault(f.users, 200), Rooms: f.rooms, Concurrency: 64,
			Hold: f.hold, Settle: 3 * time.Second})
	}
	return nil, fmt.Errorf("unknown scenario %q (reads, writes, mixed, fanout, sweep, connections, authflood, suite)", f.scenario)
}

// runMixed runs reads and writes at once: open loop, a session of each
// (set up first), measured over the same window; closed loop (cw), the
// first version's closed-loop writes beside closed-loop reads.
func runMixed(ctx context.Context, e *env, rp readParams, wp *writesParams, cw *writeParams) (*Result, error) {
	rs, err := prepareReads(ctx, e, rp)
	if err != nil {
		return nil, err
	}
	var ws *writeSession
	if wp != nil {
		if ws, err = prepareWrites(ctx, e, wp.Shape); err != nil {
			return nil, err
		}
		defer ws.close()
	}
	return measureMixed(ctx, e, rs, rp, ws, wp, cw)
}

// measureMixed measures reads on rs and writes on ws (or closed loop, cw)
// at once.
func measureMixed(ctx context.Context, e *env, rs *readSession, rp readParams, ws *writeSession, wp *writesParams, cw *writeParams) (*Result, error) {
	res := newResult("mixed", e.nodes, map[string]any{"read_rate": rp.Rate, "readers": rp.Users, "duration": rp.Duration.String()})
	res.Loop = rp.Loop
	reads := newResult("reads", e.nodes, nil)
	e.startMeasuring()
	var wg sync.WaitGroup
	var pt *writePoint
	var wres *Result
	var werr error
	wg.Go(func() {
		if ws != nil {
			pt = ws.point(ctx, wp.Point)
			return
		}
		wres, werr = runWritesClosed(ctx, e, *cw)
	})
	rs.measure(ctx, rp, reads)
	wg.Wait()
	if werr != nil {
		return nil, werr
	}
	res.merge("reads: ", reads)
	res.Seconds = reads.Seconds
	if pt != nil {
		res.Params["write_rate"] = pt.Offered
		res.Params["shape"] = ws.shape.describe(len(e.nodes))
		addPointValues(res, "writes: ", pt)
		res.CPU = pt.CPU
		res.Failed = res.Failed || pointFailed(pt)
	} else {
		res.merge("writes: ", wres)
		res.CPU = wres.CPU
	}
	return res, nil
}

// runID is unique per run, short, and valid in user and room names.
func runID() string {
	return "lt" + strconv.FormatInt(time.Now().UnixMilli()%1e10, 36)
}

// joinInts formats a list of ints with commas.
func joinInts(v []int) string {
	var parts []string
	for _, n := range v {
		parts = append(parts, strconv.Itoa(n))
	}
	return strings.Join(parts, ",")
}

// raiseFileLimit lifts the open-file limit as far as allowed: every held
// connection is a file descriptor here and, for servers the suite starts
// (which inherit the limit), there too.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	want := max(lim.Max, 200_000)
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}) != nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
