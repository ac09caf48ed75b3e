package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// The sweep: open-loop writes at a series of offered rates, to find the
// knee, the highest offered rate at which the servers still keep up
// (achieved ≈ offered) within the target (p99 ack < 50 ms).
//
// Every point runs on the same servers, accounts, rooms and connections,
// one after the other, each after the previous one has drained (every send
// answered, every member at its rooms' last acked seq) and a pause. Not
// fresh servers per point: setup registers a thousand or more accounts
// (one bcrypt hash each, about a minute of this machine's CPU) and dials
// as many connections, which would cost more than the points themselves,
// and would measure each point on cold caches and pools. The cost of
// sharing: later points run on a larger messages table; a point that does
// not drain ends the sweep, so that no point starts on another's backlog.

// sweepParams shape the sweep.
type sweepParams struct {
	Shape     shapeParams
	Rates     []float64 // msgs/s, ascending
	Point     pointParams
	Pause     time.Duration // between points, after the drain
	StopBelow float64       // stop once achieved < StopBelow × offered (0: never)
}

// defaultSweepRates are the offered rates of the sweep.
var defaultSweepRates = []float64{1000, 2000, 3000, 4000, 5000, 6000, 8000, 10000}

// runSweep measures every rate of p.Rates on one setup.
func runSweep(ctx context.Context, e *env, p sweepParams) (*Result, error) {
	s, err := prepareWrites(ctx, e, p.Shape)
	if err != nil {
		return nil, err
	}
	defer s.close()
	return sweepOn(ctx, e, s, p)
}

// sweepOn measures every rate of p.Rates on the setup s.
func sweepOn(ctx context.Context, e *env, s *writeSession, p sweepParams) (*Result, error) {
	desc := s.shape.describe(len(e.nodes))
	res := newResult("sweep", e.nodes, map[string]any{"rates": p.Rates, "arrival": string(p.Point.Arrival), "http": p.Point.HTTP,
		"point_duration": p.Point.Duration.String(), "pause": p.Pause.String(), "drain": p.Point.Drain.String(),
		"max_lateness": p.Point.MaxLateness.String(), "shape": desc})
	res.Loop = openLoop
	res.Notes = append(res.Notes, "shape: "+desc)
	start := time.Now()
	for i, rate := range p.Rates {
		if i > 0 {
			select {
			case <-time.After(p.Pause):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		pp := p.Point
		pp.Rate = rate
		var wait func()
		if e.pointStart != nil {
			wait = e.pointStart(rate)
		}
		pt := s.point(ctx, pp)
		if wait != nil {
			wait()
		}
		res.Points = append(res.Points, pt)
		fmt.Fprintf(logOut, "sweep: %s\n", pointLine(pt))
		if pointFailed(pt) {
			res.Failed = true
		}
		if !pt.Settled {
			res.Notes = append(res.Notes, fmt.Sprintf("stopped after %.0f msgs/s: it did not drain within %s", rate, p.Point.Drain))
			break
		}
		if p.StopBelow > 0 && pt.Achieved < p.StopBelow*rate && i < len(p.Rates)-1 {
			res.Notes = append(res.Notes, fmt.Sprintf("stopped after %.0f msgs/s: achieved %.0f, under %.0f %% of offered; higher rates would only queue more",
				rate, pt.Achieved, 100*p.StopBelow))
			break
		}
	}
	res.Seconds = time.Since(start).Seconds()
	knee, note := findKnee(res.Points)
	res.Knee = knee
	res.add("knee (highest offered rate within target)", knee, "msgs/s")
	res.Notes = append(res.Notes, note)
	return res, nil
}

// findKnee returns the highest offered rate whose point is within target
// (achieved ≥ 95 % of offered, p99 ack < 50 ms, the generator on schedule,
// no error, the check passed), and says so.
func findKnee(points []*writePoint) (float64, string) {
	knee := 0.0
	var below []string
	for _, pt := range points {
		if pt.Good {
			knee = max(knee, pt.Offered)
		}
	}
	for _, pt := range points {
		if !pt.Good && pt.Offered < knee {
			below = append(below, fmt.Sprintf("%.0f", pt.Offered))
		}
	}
	var note string
	switch {
	case knee == 0:
		note = "knee: no point was within target (achieved ≥ 95 % of offered, p99 ack < 50 ms, generator on schedule, no error)"
	default:
		note = fmt.Sprintf("knee: %.0f msgs/s, the highest offered rate with achieved ≥ 95 %% of offered, p99 ack < 50 ms, the generator on schedule and no error", knee)
	}
	if len(below) > 0 {
		note += fmt.Sprintf("; lower rates out of target too: %s msgs/s (noise, or a generator that fell behind)", strings.Join(below, ", "))
	}
	return knee, note
}

// verdict says whether pt is within target, out of it, or invalid. A
// generator that falls behind sends late and so can only make latency
// (counted from the intended time) look worse: a point whose p99 ack is
// over the target by more than the generator's own p99 lateness, or that
// failed otherwise (achieved short, errors, the check), is out of target
// whatever the generator did; only a point the generator's lateness could
// have pushed over is invalid.
func verdict(pt *writePoint) string {
	switch {
	case pt.Good:
		return "within target"
	case pt.KeptUp:
		return "out of target"
	}
	otherwiseGood := pt.Achieved >= achievedShare*pt.Offered && pt.Check.ok() && len(pt.Errors) == 0 && pt.Unanswered == 0 && pt.Settled
	if otherwiseGood && pt.Ack.P99-pt.Lateness.P99 < ms(targetP99) {
		return "INVALID: the generator fell behind (its lateness could account for the miss)"
	}
	return fmt.Sprintf("out of target (the generator also fell behind: lateness p99 %.0f ms)", pt.Lateness.P99)
}

// pointLine is one point on one line.
func pointLine(pt *writePoint) string {
	verdict := verdict(pt)
	errs := ""
	if len(pt.Errors) > 0 {
		errs = "; errors: " + sortedCodes(pt.Errors)
	}
	if pt.Unanswered > 0 {
		errs += fmt.Sprintf("; %d unanswered after the drain", pt.Unanswered)
	}
	if pt.UpdateAck != nil {
		errs += fmt.Sprintf("; %d edits/reactions, ack p50 %.1f p99 %.1f ms, %d update frames",
			pt.UpdatesAcked, pt.UpdateAck.P50, pt.UpdateAck.P99, pt.Updates)
	}
	return fmt.Sprintf("offered %6.0f/s  achieved %7.1f/s  ack p50 %7.1f  p99 %8.1f  p99.9 %8.1f ms  lateness p99 %6.1f ms  check: %s%s  → %s",
		pt.Offered, pt.Achieved, pt.Ack.P50, pt.Ack.P99, pt.Ack.P999, pt.Lateness.P99, pt.Check.String(), errs, verdict)
}

// sweepTable renders the points as a Markdown table.
func sweepTable(points []*writePoint) string {
	var b strings.Builder
	b.WriteString("| offered msgs/s | achieved msgs/s | ack p50 | p95 | p99 | p99.9 | max (ms) | delivery p50 / p99 / p99.9 (ms) | deliveries to other members | check | errors | generator lateness p99 (ms) | CPU server / postgres / redis / loadtest / other processes (cores) | |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, pt := range points {
		verdict := verdict(pt)
		check := "ok"
		if !pt.Check.ok() {
			check = "**" + pt.Check.String() + "**"
		}
		errs := "0"
		if len(pt.Errors) > 0 {
			errs = sortedCodes(pt.Errors)
		}
		if pt.Unanswered > 0 {
			errs += fmt.Sprintf("; %d unanswered", pt.Unanswered)
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f / %.1f | %s | %s | %s | %.1f | %.2f / %.2f / %.2f / %.2f / %.2f | %s |\n",
			thousands(pt.Offered), thousands(pt.Achieved), pt.Ack.P50, pt.Ack.P95, pt.Ack.P99, pt.Ack.P999, pt.Ack.Max,
			pt.Delivery.P50, pt.Delivery.P99, pt.Delivery.P999, thousands(float64(pt.Deliveries)), check, errs, pt.Lateness.P99,
			pt.CPU["server"], pt.CPU["postgres"], pt.CPU["redis"], pt.CPU["loadtest"], pt.CPU["other"], verdict)
	}
	return b.String()
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := fmt.Sprintf("%.0f", math.Round(v))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// writeSweepFiles writes prefix.svg (the chart), prefix.md (the table)
// and prefix.json (the result).
func writeSweepFiles(prefix string, res *Result, title string) error {
	if err := os.WriteFile(prefix+".svg", sweepChart(res.Points, res.Knee, title), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s, %s UTC, on %s.\n\nLimits: %s.\n\nMachine at the start: %s.\n\n![sweep](%s.svg)\n\n", title, res.Loop, res.Started.Format("2006-01-02 15:04"),
		strings.Join(res.Nodes, ", "), res.Limits, res.Machine, baseName(prefix))
	b.WriteString(sweepTable(res.Points))
	b.WriteString("\n")
	for _, n := range res.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	b.WriteString("\nPer second of each point (the drain's seconds after the window), acks answered / p99 ack latency in ms of the sends intended in that second:\n\n")
	for _, pt := range res.Points {
		fmt.Fprintf(&b, "- %s/s: %s\n", thousands(pt.Offered), timelineLine(pt.Timeline))
	}
	fmt.Fprintf(&b, "\nParameters: `%v`\n", res.Params)
	if err := os.WriteFile(prefix+".md", []byte(b.String()), 0o644); err != nil {
		return err
	}
	return writeJSON(prefix+".json", []*Result{res})
}

func baseName(path string) string {
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// sweepChart draws the sweep as an SVG: on the left, achieved against
// offered (with the line achieved = offered); on the right, the p50, p99
// and p99.9 of the ack latency against offered, on a logarithmic axis,
// with the 50 ms target. Points where the generator fell behind are drawn
// hollow.
func sweepChart(points []*writePoint, knee float64, title string) []byte {
	const w, h, top, bottom = 960, 400, 40, 60
	const panelW, gapX, left = 380, 90, 70
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="13">%s</text>`+"\n", left, xmlEscape(title))
	if len(points) == 0 {
		b.WriteString("</svg>\n")
		return []byte(b.String())
	}
	ph := float64(h - top - bottom)
	maxX := 0.0
	for _, pt := range points {
		maxX = max(maxX, pt.Offered, pt.Achieved)
	}
	maxX = niceCeil(maxX)
	x0a, x0b := float64(left), float64(left+panelW+gapX)
	xa := func(v float64) float64 { return x0a + panelW*v/maxX }
	xb := func(v float64) float64 { return x0b + panelW*v/maxX }
	ya := func(v float64) float64 { return top + ph*(1-v/maxX) }
	// Latency axis: decades around the data and the target.
	lo, hi := ms(targetP99), ms(targetP99)
	for _, pt := range points {
		for _, v := range []float64{pt.Ack.P50, pt.Ack.P99, pt.Ack.P999} {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	if hi <= lo {
		hi = lo * 10
	}
	yb := func(v float64) float64 {
		return top + ph*(1-(math.Log10(max(v, lo))-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
	}
	// Axes and grids.
	for i := 0; i <= 5; i++ {
		v := maxX * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			xa(v), xa(v), top, top+ph, xa(v), top+ph+15, thousands(v))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			x0a, x0a+panelW, ya(v), ya(v), x0a-5, ya(v)+4, thousands(v))
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			xb(v), xb(v), top, top+ph, xb(v), top+ph+15, thousands(v))
	}
	for d := lo; d <= hi*1.0001; d *= 10 {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n",
			x0b, x0b+panelW, yb(d), yb(d), x0b-5, yb(d)+4, d)
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%d" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0a, top, panelW, ph)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%d" height="%.1f" fill="none" stroke="#999"/>`+"\n", x0b, top, panelW, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered msgs/s</text>`+"\n", x0a+panelW/2, h-28)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">offered msgs/s</text>`+"\n", x0b+panelW/2, h-28)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="12">achieved (acked) msgs/s</text>`+"\n", x0a+panelW/2, top-6)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="12">ack latency from the intended send (ms, log)</text>`+"\n", x0b+panelW/2, top-6)
	// Left: y = x, then achieved.
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#aaa" stroke-dasharray="4,3"/>`+"\n", xa(0), ya(0), xa(maxX), ya(maxX))
	var pts []string
	for _, pt := range points {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", xa(pt.Offered), ya(pt.Achieved)))
	}
	fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="#1f77b4" stroke-width="2"/>`+"\n", strings.Join(pts, " "))
	for _, pt := range points {
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" %s/>`+"\n", xa(pt.Offered), ya(pt.Achieved), marker("#1f77b4", pt))
	}
	// Right: the target, then p50, p99, p99.9.
	fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d62728" stroke-dasharray="6,3"/><text x="%.1f" y="%.1f" fill="#d62728">50 ms target</text>`+"\n",
		x0b, x0b+panelW, yb(ms(targetP99)), yb(ms(targetP99)), x0b+4, yb(ms(targetP99))-4)
	series := []struct {
		name  string
		color string
		get   func(*writePoint) float64
	}{
		{"p50", "#2ca02c", func(p *writePoint) float64 { return p.Ack.P50 }},
		{"p99", "#ff7f0e", func(p *writePoint) float64 { return p.Ack.P99 }},
		{"p99.9", "#9467bd", func(p *writePoint) float64 { return p.Ack.P999 }},
	}
	for k, s := range series {
		pts = pts[:0]
		for _, pt := range points {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xb(pt.Offered), yb(s.get(pt))))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), s.color)
		for _, pt := range points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" %s/>`+"\n", xb(pt.Offered), yb(s.get(pt)), marker(s.color, pt))
		}
		lx := x0b + 10 + float64(k)*70
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%.1f" y="%d">%s</text>`+"\n",
			lx, lx+18, h-12, h-12, s.color, lx+22, h-8, s.name)
	}
	if knee > 0 {
		for _, x := range []float64{xa(knee), xb(knee)} {
			fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke="#555" stroke-dasharray="2,3"/><text x="%.1f" y="%d" fill="#555">knee %s/s</text>`+"\n",
				x, x, top, top+ph, x+3, top+12, thousands(knee))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">filled: the generator kept its schedule; hollow: it fell behind</text>`+"\n", left, h-8)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// marker fills a point's circle unless its generator fell behind.
func marker(color string, pt *writePoint) string {
	if pt.KeptUp {
		return fmt.Sprintf(`fill="%s"`, color)
	}
	return fmt.Sprintf(`fill="white" stroke="%s" stroke-width="1.5"`, color)
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// render reads a result file (-json, -sweep-files' .json, or the suite's
// results.json) and draws it again, after a change to how results are
// drawn: with a prefix, its sweep's files; else the suite's report,
// latency chart and sweep files into dir.
func render(jsonPath, prefix, dir string) error {
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		return err
	}
	var results []*Result
	if err := json.Unmarshal(raw, &results); err != nil {
		return err
	}
	if prefix == "" {
		return writeReport(dir, results)
	}
	for _, r := range results {
		if len(r.Points) > 0 {
			return writeSweepFiles(prefix, r, sweepTitle(r))
		}
	}
	return fmt.Errorf("%s holds no sweep", jsonPath)
}
