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
	"slices"
	"strings"
	"sync"
	"time"
)

// suiteStep is one scenario of the suite with its short parameters.
type suiteStep struct {
	name string
	run  func(ctx context.Context, e *env) (*Result, error)
}

// suiteSteps are the short runs of every scenario; conns is how many
// connections to hold.
func suiteSteps(conns int) []suiteStep {
	d := 5 * time.Second
	return []suiteStep{
		// First, on a fresh server: its memory before is then the idle
		// server's, not what earlier scenarios left in its heap.
		{"connections", func(ctx context.Context, e *env) (*Result, error) {
			return runConnections(ctx, e, connParams{Conns: conns, Users: 200, Rooms: 20, Concurrency: 64,
				Hold: 5 * time.Second, Settle: 5 * time.Second})
		}},
		{"reads", func(ctx context.Context, e *env) (*Result, error) {
			return runReads(ctx, e, readParams{Users: 32, Seed: 500, Duration: d})
		}},
		{"writes", func(ctx context.Context, e *env) (*Result, error) {
			return runWrites(ctx, e, writeParams{Users: 32, Rooms: 8, Window: 4, Duration: d})
		}},
		{"writes-http", func(ctx context.Context, e *env) (*Result, error) {
			return runWrites(ctx, e, writeParams{Users: 32, Rooms: 8, Window: 1, HTTP: true, Duration: d})
		}},
		{"mixed", func(ctx context.Context, e *env) (*Result, error) {
			return runMixed(ctx, e, &flags{users: 32, rooms: 8, window: 4, seed: 500, duration: d})
		}},
		{"fanout", func(ctx context.Context, e *env) (*Result, error) {
			return runFanout(ctx, e, fanoutParams{Rooms: 1, Subscribers: 1000, UsersPerRoom: 50,
				Interval: 10 * time.Millisecond, Duration: d, Drain: 15 * time.Second})
		}},
	}
}

// runSuite starts a fresh single node, runs every scenario short, then the
// same on a fresh two-node cluster, and writes results.json, report.md and
// latency.svg to f.out.
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
	var results []*Result
	for _, nodeCount := range []int{1, 2} {
		conns := f.suiteConns
		if nodeCount > 1 {
			conns = f.suiteConns / 4 // the cluster run checks it works, not the memory floor
		}
		rs, err := suiteTopology(ctx, f, run, cmp.Or(f.logs, tmp), secret, nodeCount, conns)
		results = append(results, rs...)
		if err != nil {
			return err
		}
	}
	if err := writeJSON(filepath.Join(f.out, "results.json"), results); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.out, "latency.svg"), latencyChart(results), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(f.out, "report.md"), report(results), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/results.json, report.md and latency.svg\n", f.out)
	for _, r := range results {
		if r.Failed {
			return fmt.Errorf("%s on %d node(s) failed", r.Scenario, len(r.Nodes))
		}
	}
	return nil
}

// cluster is a set of fresh nodes started by the load test.
type cluster struct {
	servers []*server
	nodes   []*node
	dbURL   string
}

// startCluster starts nodeCount nodes on a database and Redis prefix of
// their own (named after run), sharing the JWT key in secretFile, with
// args after the load-test limits; logs go to logDir.
func startCluster(ctx context.Context, f *flags, run, logDir, secretFile string, nodeCount int, args ...string) (*cluster, error) {
	u, err := url.Parse(f.databaseURL)
	if err != nil {
		return nil, err
	}
	u.Path = fmt.Sprintf("/loadtest_%s_%d", run, nodeCount)
	c := &cluster{dbURL: u.String()}
	for i := range nodeCount {
		s, err := startServer(ctx, spawnOptions{
			Binary: f.serverBin, DatabaseURL: c.dbURL, RedisURL: f.redisURL,
			RedisPrefix: fmt.Sprintf("loadtest:%s:%d:", run, nodeCount), SecretFile: secretFile,
			LogPath: filepath.Join(logDir, fmt.Sprintf("server-%d-%d.log", nodeCount, i)),
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

// suiteTopology runs every step against nodeCount fresh nodes.
func suiteTopology(ctx context.Context, f *flags, run, tmp, secret string, nodeCount, conns int) ([]*Result, error) {
	c, err := startCluster(ctx, f, run, tmp, secret, nodeCount)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	nodes, servers := c.nodes, c.servers
	fmt.Printf("\n##### %d node(s): %s\n", nodeCount, c.urls())
	var results []*Result
	for i, step := range suiteSteps(conns) {
		e := &env{nodes: nodes, dialer: newDialer(1 + conns/10000), run: fmt.Sprintf("%s%d%d", run, nodeCount, i), debug: c.debugAddrs()}
		var wait func()
		if f.profiles != "" && nodeCount == 1 {
			e.measuring, wait = profiler(ctx, servers[0].Debug, filepath.Join(f.profiles, step.name), 4)
		}
		res, err := step.run(ctx, e)
		if wait != nil {
			wait()
		}
		if err != nil {
			return results, fmt.Errorf("%s on %d node(s): %w", step.name, nodeCount, err)
		}
		res.Scenario = step.name
		res.Notes = append(res.Notes, serverLimitsNote)
		res.print(os.Stdout)
		results = append(results, res)
		runtime.GC()
	}
	return results, nil
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
	fmt.Fprintf(&b, "# Load test report\n\nGenerated by `make loadtest` (`loadtest -scenario suite`) on %s, %s/%s, %d CPUs, %s.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version())
	b.WriteString("Everything (servers, Postgres, Redis, the load generator) ran on this one machine, which other processes shared: " +
		"absolute figures are noisy, compare ratios within one report. " + serverLimitsNote + ".\n\n")
	b.WriteString("![latency percentiles](latency.svg)\n\n")
	for _, r := range results {
		fmt.Fprintf(&b, "## %s — %d node(s)\n\n", r.Scenario, len(r.Nodes))
		if r.Failed {
			b.WriteString("**FAILED**\n\n")
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
			b.WriteString("| latency (ms) | count | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|\n")
			for _, k := range sortedKeys(r.Latencies) {
				s := r.Latencies[k]
				fmt.Fprintf(&b, "| %s | %d | %.2f | %.2f | %.2f | %.2f |\n", k, s.Count, s.P50, s.P95, s.P99, s.Max)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "Parameters: `%v`\n\n", r.Params)
	}
	return []byte(b.String())
}

// chartSeries are the latencies the chart draws, by scenario.
var chartSeries = map[string]string{"reads": "read (all)", "writes": "ack", "writes-http": "ack", "fanout": "end-to-end"}

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
		key, ok := chartSeries[r.Scenario]
		s, found := r.Latencies[key]
		if !ok || !found || len(s.CDF) != len(cdfPoints) {
			continue
		}
		for _, y := range s.CDF {
			y = max(y, 0.01)
			lo, hi = min(lo, y), max(hi, y)
		}
		all = append(all, series{fmt.Sprintf("%s %s, %d node(s)", r.Scenario, key, len(r.Nodes)), s.CDF})
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
		if strings.HasSuffix(s.name, "2 node(s)") {
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
