package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"
)

// suiteDuration is how long each scenario of the suite measures (each
// point, for the sweep).
const suiteDuration = 5 * time.Second

// runSuite runs a short version of every scenario on fresh servers, and
// writes results.json, report.md, latency.svg and sweep.svg, .md and .json
// to f.out:
//
//  1. one node, the connection cap off: connections (the memory floor);
//  2. two nodes, every abuse limit at its default, open loop: reads,
//     fanout, then on one writes setup writes, writes-http, mixed (beside
//     the reads' setup) and the sweep;
//  3. two nodes, the limits off, closed loop (the first version's method,
//     for comparison): writes and fanout.
func runSuite(ctx context.Context, f *flags) error {
	run := runID()
	tmp, secret, err := spawnDir(f)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	logDir := cmp.Or(f.logs, tmp)
	var results []*Result
	step := func(c *cluster, name string, k int, profile limitProfile, do func(e *env) (*Result, error)) error {
		e := &env{nodes: c.nodes, dialer: newDialer(1 + f.suiteConns/10000), run: fmt.Sprintf("%s%d%d", run, len(c.nodes), k), debug: c.debugAddrs()}
		var wait func()
		if f.profiles != "" {
			e.measuring, wait = profiler(ctx, c.servers[0].Debug, filepath.Join(f.profiles, name), 4)
			e.pointStart = pointProfiler(ctx, c.servers[0].Debug, filepath.Join(f.profiles, name))
		}
		fmt.Fprintf(logOut, "\n### %s on %d node(s)\n", name, len(c.nodes))
		res, err := do(e)
		if wait != nil {
			wait()
		}
		if err != nil {
			return fmt.Errorf("%s on %d node(s): %w", name, len(c.nodes), err)
		}
		res.Scenario = name
		res.Limits = profile.note
		res.print(os.Stdout)
		results = append(results, res)
		runtime.GC()
		return nil
	}
	withCluster := func(nodes int, profile limitProfile, body func(c *cluster) error) error {
		c, err := startCluster(ctx, f, run, logDir, secret, nodes, profile)
		if err != nil {
			return err
		}
		defer c.stop()
		fmt.Printf("\n##### %d node(s), limits %s: %s\n", nodes, profile.name, c.urls())
		return body(c)
	}
	a, err := parseArrival(f.arrival)
	if err != nil {
		return err
	}
	rates, err := parseRates(f.rates)
	if err != nil {
		return err
	}
	d := suiteDuration
	phases := []func() error{
		func() error {
			return withCluster(1, limitsManyConns, func(c *cluster) error {
				// First, on a fresh server: its memory before is then the
				// idle server's, not what other scenarios left in its heap.
				return step(c, "connections", 0, limitsManyConns, func(e *env) (*Result, error) {
					return runConnections(ctx, e, connParams{Conns: f.suiteConns, Users: 200, Rooms: 20, Concurrency: 64,
						Hold: 5 * time.Second, Settle: 5 * time.Second})
				})
			})
		},
		func() error {
			return withCluster(2, limitsDefault, func(c *cluster) error {
				rp := readParams{Users: 100, Seed: 2000, ColdRooms: 1000, ColdMessages: 20, Rate: 4000, ColdShare: 0.1,
					Arrival: a, Loop: openLoop, Duration: d, MaxLateness: f.maxLateness}
				var rs *readSession
				if err := step(c, "reads", 1, limitsDefault, func(e *env) (*Result, error) {
					var err error
					if rs, err = prepareReads(ctx, e, rp); err != nil {
						return nil, err
					}
					res := newResult("reads", e.nodes, map[string]any{"readers": rp.Users, "seed_messages": rp.Seed, "cold_rooms": rp.ColdRooms,
						"cold_messages": rp.ColdMessages, "rate": rp.Rate, "arrival": string(a), "duration": d.String()})
					res.Loop = openLoop
					e.startMeasuring()
					rs.measure(ctx, rp, res)
					return res, nil
				}); err != nil {
					return err
				}
				if err := step(c, "fanout", 2, limitsDefault, func(e *env) (*Result, error) {
					return runFanout(ctx, e, fanoutParams{Rooms: 1, Subscribers: 1000, UsersPerRoom: 100, Senders: 20,
						Interval: 10 * time.Millisecond, Duration: d, Drain: f.drain, Arrival: a, Loop: openLoop, MaxLateness: f.maxLateness})
				}); err != nil {
					return err
				}
				// One writes setup, sized for the sweep's top rate, for the
				// rest.
				sp, err := shapeFor(&flags{users: f.users, roomSizes: f.roomSizes, bigRoom: f.bigRoom, bigShare: f.bigShare,
					arrival: f.arrival, maxConnRate: f.maxConnRate}, slices.Max(rates))
				if err != nil {
					return err
				}
				e := &env{nodes: c.nodes, dialer: newDialer(1), run: run + "w"}
				ws, err := prepareWrites(ctx, e, sp)
				if err != nil {
					return err
				}
				defer ws.close()
				desc := ws.shape.describe(len(c.nodes))
				point := func(rate float64, http bool) pointParams {
					return pointParams{Rate: rate, Arrival: a, HTTP: http, Duration: d, Drain: f.drain, MaxLateness: f.maxLateness, Seed: 1}
				}
				for k, w := range []struct {
					name string
					rate float64
					http bool
				}{{"writes", 2000, false}, {"writes-http", 1000, true}} {
					if err := step(c, w.name, 3+k, limitsDefault, func(e2 *env) (*Result, error) {
						ws.e = e2
						e2.startMeasuring()
						return pointResult(w.name, e2, ws.point(ctx, point(w.rate, w.http)), desc), nil
					}); err != nil {
						return err
					}
				}
				if err := step(c, "mixed", 5, limitsDefault, func(e2 *env) (*Result, error) {
					ws.e = e2
					mrp := rp
					mrp.Rate, mrp.ColdShare = 2000, 0 // the cold rooms were read in reads
					return measureMixed(ctx, e2, rs, mrp, ws, &writesParams{Shape: sp, Point: point(1500, false)}, nil)
				}); err != nil {
					return err
				}
				return step(c, "sweep", 6, limitsDefault, func(e2 *env) (*Result, error) {
					ws.e = e2
					return sweepOn(ctx, e2, ws, sweepParams{Shape: sp, Rates: rates, Point: point(0, false), Pause: 3 * time.Second, StopBelow: f.stopBelow})
				})
			})
		},
		func() error {
			return withCluster(2, limitsOff, func(c *cluster) error {
				if err := step(c, "writes", 7, limitsOff, func(e *env) (*Result, error) {
					return runWritesClosed(ctx, e, writeParams{Users: 32, Rooms: 8, Window: 4, Duration: d})
				}); err != nil {
					return err
				}
				return step(c, "fanout", 8, limitsOff, func(e *env) (*Result, error) {
					return runFanout(ctx, e, fanoutParams{Rooms: 1, Subscribers: 1000, UsersPerRoom: 50, Senders: 1,
						Interval: 10 * time.Millisecond, Duration: d, Drain: f.drain, Loop: closedLoop})
				})
			})
		},
	}
	var runErr error
	for _, ph := range phases {
		if runErr = ph(); runErr != nil {
			break
		}
	}
	if len(results) == 0 {
		return runErr
	}
	if err := writeJSON(filepath.Join(f.out, "results.json"), results); err != nil {
		return err
	}
	if err := writeReport(f.out, results); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/results.json, report.md, latency.svg and sweep.{svg,md,json}\n", f.out)
	if runErr != nil {
		return runErr
	}
	for _, r := range results {
		if r.Failed {
			return fmt.Errorf("%s on %d node(s) failed", r.title(), len(r.Nodes))
		}
	}
	return nil
}

// writeReport writes report.md, latency.svg and, for a sweep among
// results, sweep.svg, .md and .json to dir.
func writeReport(dir string, results []*Result) error {
	if err := os.WriteFile(filepath.Join(dir, "latency.svg"), latencyChart(results), 0o644); err != nil {
		return err
	}
	for _, r := range results {
		if len(r.Points) > 0 {
			if err := writeSweepFiles(filepath.Join(dir, "sweep"), r, sweepTitle(r)); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), report(results), 0o644)
}

// sweepTitle is the sweep chart's title.
func sweepTitle(r *Result) string {
	return fmt.Sprintf("Open-loop writes on %d node(s), %s UTC: offered against achieved, and ack latency", len(r.Nodes), r.Started.Format("2006-01-02 15:04"))
}

// cluster is a set of fresh nodes started by the load test.
type cluster struct {
	servers []*server
	nodes   []*node
	dbURL   string
}

// startCluster starts nodeCount nodes on a database and Redis prefix of
// their own (named after run), sharing the JWT key in secretFile, with the
// profile's limits and then args; logs go to logDir.
func startCluster(ctx context.Context, f *flags, run, logDir, secretFile string, nodeCount int, profile limitProfile, args ...string) (*cluster, error) {
	u, err := url.Parse(f.databaseURL)
	if err != nil {
		return nil, err
	}
	clusterIDs++
	u.Path = fmt.Sprintf("/loadtest_%s_%d", run, clusterIDs)
	c := &cluster{dbURL: u.String()}
	args = append(slices.Clone(profile.args), args...)
	for i := range nodeCount {
		s, err := startServer(ctx, spawnOptions{
			Binary: f.serverBin, DatabaseURL: c.dbURL, RedisURL: f.redisURL, RedisCluster: f.redisCluster,
			RedisPrefix: fmt.Sprintf("loadtest:%s:%d:", run, clusterIDs), SecretFile: secretFile,
			LogPath: filepath.Join(logDir, fmt.Sprintf("server-%d-%d.log", clusterIDs, i)),
			Args:    args,
		})
		if err != nil {
			c.stop()
			return nil, err
		}
		c.servers = append(c.servers, s)
		c.nodes = append(c.nodes, newNode(s.URL))
	}
	return c, nil
}

// clusterIDs numbers the clusters of a process (each has its own database
// and Redis prefix).
var clusterIDs int

// stop stops the nodes and drops their database.
func (c *cluster) stop() {
	for _, s := range c.servers {
		s.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := dropDatabase(ctx, c.dbURL); err != nil {
		fmt.Fprintf(os.Stderr, "loadtest: drop %s: %v\n", c.dbURL, err)
	}
}

// debugAddrs lists the nodes' pprof listeners.
func (c *cluster) debugAddrs() []string {
	var addrs []string
	for _, s := range c.servers {
		addrs = append(addrs, s.Debug)
	}
	return addrs
}

// urls lists the nodes' base URLs.
func (c *cluster) urls() string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, n.base)
	}
	return strings.Join(urls, ", ")
}

// secretFile writes a random JWT key for the nodes of a cluster into dir.
// spawnDir makes the temporary directory of the servers a run starts, with
// their shared JWT secret file in it, and the -logs directory if asked for.
// The caller removes dir.
func spawnDir(f *flags) (dir, secret string, err error) {
	dir, err = os.MkdirTemp("", "loadtest-")
	if err != nil {
		return "", "", err
	}
	if secret, err = secretFile(dir); err == nil && f.logs != "" {
		err = os.MkdirAll(f.logs, 0o755)
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", "", err
	}
	return dir, secret, nil
}

func secretFile(dir string) (string, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	path := filepath.Join(dir, "jwt-secret")
	return path, os.WriteFile(path, []byte(hex.EncodeToString(secret)), 0o600)
}

// profiler returns a function that, called when a scenario's measured
// phase begins, records a CPU profile of the server at debugAddr for secs
// seconds and then a heap profile, to prefix.cpu.pprof and
// prefix.heap.pprof; wait returns once both are written.
func profiler(ctx context.Context, debugAddr, prefix string, secs int) (start func(), wait func()) {
	done := make(chan struct{})
	var once sync.Once
	start = func() {
		once.Do(func() {
			go func() {
				defer close(done)
				if os.MkdirAll(filepath.Dir(prefix), 0o755) != nil {
					return
				}
				fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", debugAddr, secs), prefix+".cpu.pprof")
				fetch(ctx, "http://"+debugAddr+"/debug/pprof/heap", prefix+".heap.pprof")
			}()
		})
	}
	wait = func() {
		start() // a scenario that failed early: profile the idle server rather than hang
		<-done
	}
	return start, wait
}

// pointProfiler returns a hook that profiles each point of a sweep (4 s of
// CPU, then the heap) into prefix-<rate>.cpu.pprof and .heap.pprof; the
// function the hook returns waits for the files.
func pointProfiler(ctx context.Context, debugAddr, prefix string) func(rate float64) func() {
	return func(rate float64) func() {
		start, wait := profiler(ctx, debugAddr, fmt.Sprintf("%s-%.0f", prefix, rate), 4)
		start()
		return wait
	}
}

// profileSelf starts a CPU profile of the load generator into path; stop
// ends it and closes the file.
func profileSelf(path string) (stop func(), err error) {
	out, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}

// fetch GETs url into the file at path ("" discards the body).
func fetch(ctx context.Context, url, path string) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return
	}
	if path == "" {
		_, _ = io.Copy(io.Discard, resp.Body)
		return
	}
	out, err := os.Create(path)
	if err != nil {
		return
	}
	defer out.Close()
	_, _ = io.Copy(out, resp.Body)
}

// report renders results as Markdown.
func report(results []*Result) []byte {
	var b strings.Builder
	at := time.Now().UTC()
	if len(results) > 0 {
		at = results[0].Started
	}
	fmt.Fprintf(&b, "# Load test report\n\nGenerated by `make loadtest` (`loadtest -scenario suite`), started %s, %s/%s, %d CPUs, %s.\n\n",
		at.Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	b.WriteString("Everything (servers, Postgres, Redis, the load generator) ran on this one machine, which other processes may have shared: " +
		"absolute figures are noisy, compare ratios within one report. Each section says whether it was measured **open loop** " +
		"(every connection or reader on a schedule of its own, latency from the intended send time, the servers' abuse limits at " +
		"their defaults and every user under them) or **closed loop** (the next request when an answer comes, latency from the " +
		"actual send, the limits off: the first version's method, kept for comparison).\n\n")
	b.WriteString("![latency percentiles](latency.svg)\n\n")
	for _, r := range results {
		if len(r.Points) > 0 {
			b.WriteString("![sweep](sweep.svg)\n\n")
			break
		}
	}
	for _, r := range results {
		fmt.Fprintf(&b, "## %s — %d node(s)\n\n", r.title(), len(r.Nodes))
		if r.Failed {
			b.WriteString("**FAILED**\n\n")
		}
		if r.Limits != "" {
			fmt.Fprintf(&b, "Limits: %s.\n\n", r.Limits)
		}
		if r.Machine != "" {
			fmt.Fprintf(&b, "Machine at the start: %s.\n\n", r.Machine)
		}
		if len(r.Points) > 0 {
			b.WriteString(sweepTable(r.Points))
			b.WriteString("\n")
		}
		b.WriteString("| figure | value |\n|---|---|\n")
		for _, v := range r.Values {
			fmt.Fprintf(&b, "| %s | %s %s |\n", v.Name, formatValue(v.Value), v.Unit)
		}
		for _, k := range sortedKeys(r.CPU) {
			fmt.Fprintf(&b, "| CPU %s | %.2f cores |\n", k, r.CPU[k])
		}
		b.WriteString("\n")
		if len(r.Latencies) > 0 {
			b.WriteString("| latency (ms) | count | p50 | p95 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|\n")
			for _, k := range sortedKeys(r.Latencies) {
				s := r.Latencies[k]
				fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %.2f | %.2f |\n", k, s.Count, s.P50, s.P95, s.P99, s.P999, s.Max)
			}
			b.WriteString("\n")
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
		fmt.Fprintf(&b, "\nParameters: `%v`\n\n", r.Params)
	}
	return []byte(b.String())
}

// chartKeys are the latencies the chart draws, the first a result has.
var chartKeys = []string{
	"read (all) (from intended send)", "end-to-end (from intended send)", "ack (from intended send)",
	"read (all) (from actual send)", "end-to-end (from actual send)", "ack (from actual send)",
}

// latencyChart draws, for each scenario's main latency, its value at each
// percentile of cdfPoints, on a logarithmic axis, as an SVG.
func latencyChart(results []*Result) []byte {
	const w, h, left, right, top, bottom = 760, 420, 60, 210, 30, 50
	type series struct {
		name string
		ys   []float64
	}
	var all []series
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, r := range results {
		var s Summary
		for _, k := range chartKeys {
			if v, ok := r.Latencies[k]; ok && r.Scenario != "mixed" {
				s = v
				break
			}
		}
		if len(s.CDF) != len(cdfPoints) {
			continue
		}
		for _, y := range s.CDF {
			y = max(y, 0.01)
			lo, hi = min(lo, y), max(hi, y)
		}
		all = append(all, series{fmt.Sprintf("%s, %s, %d node(s)", r.Scenario, strings.TrimSuffix(r.Loop, " loop"), len(r.Nodes)), s.CDF})
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13">Latency by percentile (ms, log scale)</text>`+"\n", left)
	if len(all) == 0 {
		b.WriteString("</svg>\n")
		return []byte(b.String())
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	pw, ph := float64(w-left-right), float64(h-top-bottom)
	x := func(i int) float64 { return left + pw*float64(i)/float64(len(cdfPoints)-1) }
	y := func(v float64) float64 {
		return top + ph*(1-(math.Log10(max(v, 0.01))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			left, left+pw, y(d), y(d), left-5, y(d)+4, d)
	}
	for i, p := range cdfPoints {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="middle">p%g</text>`+"\n",
			x(i), x(i), top, top+ph, x(i), top+ph+15, p*100)
	}
	colors := []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"}
	for k, s := range all {
		c := colors[k%len(colors)]
		var pts []string
		for i, v := range s.ys {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(i), y(v)))
		}
		dash := ""
		if strings.Contains(s.name, "closed") {
			dash = ` stroke-dasharray="5,3"`
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), c, dash)
		ly := top + 10 + 16*k
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%d" y="%d">%s</text>`+"\n",
			w-right+10, w-right+30, ly, ly, c, dash, w-right+35, ly+4, s.name)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">percentile</text>`+"\n", left+pw/2, h-10)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
