// Command loadtest drives Switchboard servers over real HTTP and WebSocket
// connections on loopback and reports throughput, latency and the server's
// cost. Every run is bounded in time and count; it prints a summary table
// and writes JSON.
//
//	go run ./loadtest -scenario fanout -nodes http://127.0.0.1:8080 -rooms 1 -subscribers 1000 -interval 10ms -duration 10s
//	go run ./loadtest -scenario suite -server bin/switchboard -out docs/performance
//
// Scenarios: reads, writes (-http for HTTP POST), mixed, fanout,
// connections, and suite, which starts fresh servers (one node, then two)
// and runs a short version of each, then writes a Markdown report and an
// SVG latency chart. authflood starts its own servers too: a real user's
// login and /me latencies under a password-guessing flood, with the auth
// limits off and then on.
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
	"strconv"
	"strings"
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
	seed        int
	attackers   int
	// suite
	serverBin   string
	out         string
	profiles    string
	databaseURL string
	redisURL    string
	suiteConns  int
	spawn       int
	logs        string
}

func run(ctx context.Context, args []string) error {
	var f flags
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&f.scenario, "scenario", "", "reads, writes, mixed, fanout, connections, authflood or suite")
	fs.StringVar(&f.nodes, "nodes", "http://127.0.0.1:8080", "comma-separated base URLs of the nodes to spread clients over (loopback only)")
	fs.StringVar(&f.jsonPath, "json", "", "write the result as JSON to this file")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to read, write or send")
	fs.IntVar(&f.users, "users", 20, "virtual users (reads, writes, mixed) or accounts the connections share (connections) or per fanout room")
	fs.IntVar(&f.rooms, "rooms", 1, "rooms (writes: users write to room i%rooms; fanout: rooms, each with its sender)")
	fs.IntVar(&f.subscribers, "subscribers", 100, "fanout: receiving connections per room")
	fs.DurationVar(&f.interval, "interval", 10*time.Millisecond, "fanout: one message per room every interval")
	fs.IntVar(&f.window, "window", 4, "writes: WebSocket sends in flight per connection")
	fs.BoolVar(&f.http, "http", false, "writes: send with HTTP POST instead of WebSocket")
	fs.IntVar(&f.conns, "conns", 1000, "connections: how many to open and hold")
	fs.DurationVar(&f.hold, "hold", 5*time.Second, "connections: how long to hold them")
	fs.IntVar(&f.sourceIPs, "source-ips", 1, "dial from 127.0.0.1..127.0.0.N, to hold more than ~28k connections")
	fs.IntVar(&f.maxCount, "max", 0, "bound on requests (reads) or messages (writes; fanout: per room); 0: only -duration")
	fs.IntVar(&f.seed, "seed", 500, "reads: messages stored before reading")
	fs.IntVar(&f.attackers, "attackers", 40, "authflood: concurrent wrong-password logins")
	fs.StringVar(&f.serverBin, "server", "bin/switchboard", "suite and -spawn: the switchboard binary to start")
	fs.StringVar(&f.out, "out", "docs/performance", "suite: directory for results.json, report.md and latency.svg")
	fs.StringVar(&f.profiles, "profiles", "", "suite and -spawn: directory for 4 s CPU and heap profiles of the (first) server in each scenario's measured phase (off when empty)")
	fs.StringVar(&f.databaseURL, "database-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		"suite and -spawn: Postgres server to create the run's own database on (its path is replaced)")
	fs.StringVar(&f.redisURL, "redis-url", "", "suite and -spawn: Redis URL for the servers (default: theirs)")
	fs.IntVar(&f.suiteConns, "suite-conns", 19000, "suite: connections held by the single node (each is a file descriptor on both sides: mind ulimit -n)")
	fs.StringVar(&f.logs, "logs", "", "suite and -spawn: keep the servers' logs in this directory (default: a temporary one, removed)")
	fs.IntVar(&f.spawn, "spawn", 0, "start this many fresh nodes of -server (own database and Redis prefix, limits off) instead of using -nodes")
	if err := fs.Parse(args); err != nil {
		return err
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
	if f.spawn > 0 {
		tmp, secret, err := spawnDir(&f)
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		c, err := startCluster(ctx, &f, runID(), cmp.Or(f.logs, tmp), secret, f.spawn)
		if err != nil {
			return err
		}
		defer c.stop()
		f.nodes = c.urls()
		debug = c.debugAddrs()
		if f.profiles != "" {
			profileStart, profileWait = profiler(ctx, c.servers[0].Debug, filepath.Join(f.profiles, f.scenario), 4)
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
	e := &env{nodes: nodes, dialer: newDialer(f.sourceIPs), run: runID(), measuring: profileStart, debug: debug}
	res, err := runScenario(ctx, e, &f)
	if profileWait != nil {
		profileWait()
	}
	if err != nil {
		return err
	}
	res.print(os.Stdout)
	if f.jsonPath != "" {
		if err := writeJSON(f.jsonPath, []*Result{res}); err != nil {
			return err
		}
	}
	if res.Failed {
		return fmt.Errorf("%s failed", res.Scenario)
	}
	return nil
}

// runScenario runs the one scenario f names.
func runScenario(ctx context.Context, e *env, f *flags) (*Result, error) {
	switch f.scenario {
	case "reads":
		return runReads(ctx, e, readParams{Users: f.users, Seed: f.seed, Duration: f.duration, MaxRequests: f.maxCount})
	case "writes":
		return runWrites(ctx, e, writeParams{Users: f.users, Rooms: f.rooms, Window: f.window, HTTP: f.http,
			Duration: f.duration, MaxMessages: f.maxCount})
	case "mixed":
		return runMixed(ctx, e, f)
	case "fanout":
		return runFanout(ctx, e, fanoutParams{Rooms: f.rooms, Subscribers: f.subscribers, UsersPerRoom: f.users,
			Interval: f.interval, Duration: f.duration, MaxMessages: f.maxCount, Drain: 10 * time.Second})
	case "connections":
		return runConnections(ctx, e, connParams{Conns: f.conns, Users: f.users, Rooms: f.rooms, Concurrency: 64,
			Hold: f.hold, Settle: 3 * time.Second})
	}
	return nil, fmt.Errorf("unknown scenario %q (reads, writes, mixed, fanout, connections, suite)", f.scenario)
}

// runMixed runs reads and writes at once, half the users each.
func runMixed(ctx context.Context, e *env, f *flags) (*Result, error) {
	users := max(f.users/2, 1)
	type out struct {
		r   *Result
		err error
	}
	reads, writes := make(chan out, 1), make(chan out, 1)
	go func() {
		r, err := runReads(ctx, e, readParams{Users: users, Seed: f.seed, Duration: f.duration, MaxRequests: f.maxCount / 2})
		reads <- out{r, err}
	}()
	go func() {
		r, err := runWrites(ctx, e, writeParams{Users: users, Rooms: f.rooms, Window: f.window, HTTP: f.http,
			Duration: f.duration, MaxMessages: f.maxCount / 2})
		writes <- out{r, err}
	}()
	r, w := <-reads, <-writes
	if r.err != nil {
		return nil, r.err
	}
	if w.err != nil {
		return nil, w.err
	}
	res := newResult("mixed", e.nodes, map[string]any{"users": f.users, "reads": r.r.Params, "writes": w.r.Params})
	res.Seconds = max(r.r.Seconds, w.r.Seconds)
	res.merge("reads: ", r.r)
	res.merge("writes: ", w.r)
	res.CPU = w.r.CPU
	return res, nil
}

// runID is unique per run, short, and valid in user and room names.
func runID() string {
	return "lt" + strconv.FormatInt(time.Now().UnixMilli()%1e10, 36)
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
