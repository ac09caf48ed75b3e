package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) addAll(ds []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, ds...)
	l.mu.Unlock()
}

func (l *latencies) summary() Summary {
	l.mu.Lock()
	defer l.mu.Unlock()
	return summarize(l.d)
}

// Summary is a latency distribution in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// CDF holds the latency at each of cdfPoints, for the report's chart.
	CDF []float64 `json:"cdf_ms,omitempty"`
}

// cdfPoints are the quantiles the report's chart draws.
var cdfPoints = []float64{0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}

func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) float64 {
		i := int(p * float64(len(s)-1))
		return float64(s[i]) / float64(time.Millisecond)
	}
	out := Summary{Count: len(s), P50: q(0.5), P95: q(0.95), P99: q(0.99), P999: q(0.999), Max: q(1)}
	for _, p := range cdfPoints {
		out.CDF = append(out.CDF, q(p))
	}
	return out
}

// Value is one figure of a run.
type Value struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Result is what one scenario run reports; it is printed as a table and
// written as JSON.
type Result struct {
	Scenario string `json:"scenario"`
	// Loop is "open loop" (requests on a schedule, latency from the
	// intended time) or "closed loop" (the next request when an answer
	// frees a slot); "" where neither applies (connections).
	Loop string `json:"loop,omitempty"`
	// Limits says how the servers' abuse limits were set.
	Limits string `json:"limits,omitempty"`
	// Machine is how busy the machine was as the run started.
	Machine   string             `json:"machine,omitempty"`
	Nodes     []string           `json:"nodes"`
	Params    map[string]any     `json:"params"`
	Started   time.Time          `json:"started"`
	Seconds   float64            `json:"seconds"`
	Values    []Value            `json:"values"`
	Latencies map[string]Summary `json:"latencies"`
	// CPU is the CPU used during the run, in cores, by component (server,
	// postgres, redis, loadtest).
	CPU   map[string]float64 `json:"cpu_cores,omitempty"`
	Notes []string           `json:"notes,omitempty"`
	// Points are the sweep's rates; Knee the highest within target.
	Points []*writePoint `json:"points,omitempty"`
	Knee   float64       `json:"knee_msgs_per_s,omitempty"`
	// Failed is set when a check of the run failed (lost or repeated
	// messages, connections not held).
	Failed bool `json:"failed"`
}

// title names the run with its loop.
func (r *Result) title() string {
	if r.Loop == "" {
		return r.Scenario
	}
	return r.Scenario + " (" + r.Loop + ")"
}

func newResult(scenario string, nodes []*node, params map[string]any) *Result {
	r := &Result{Scenario: scenario, Params: params, Started: time.Now().UTC(), Latencies: map[string]Summary{}, Machine: machineState()}
	for _, n := range nodes {
		r.Nodes = append(r.Nodes, n.base)
	}
	return r
}

func (r *Result) add(name string, v float64, unit string) {
	r.Values = append(r.Values, Value{Name: name, Value: v, Unit: unit})
}

// value returns the figure called name, or 0.
func (r *Result) value(name string) float64 {
	for _, v := range r.Values {
		if v.Name == name {
			return v.Value
		}
	}
	return 0
}

// merge adds other's figures to r, each name prefixed.
func (r *Result) merge(prefix string, other *Result) {
	for _, v := range other.Values {
		r.add(prefix+v.Name, v.Value, v.Unit)
	}
	for k, s := range other.Latencies {
		r.Latencies[prefix+k] = s
	}
	r.Notes = append(r.Notes, other.Notes...)
	r.Failed = r.Failed || other.Failed
}

// print writes r as a table.
func (r *Result) print(w io.Writer) {
	fmt.Fprintf(w, "\n== %s on %s (%.1f s) ==\n", r.title(), strings.Join(r.Nodes, ", "), r.Seconds)
	if r.Limits != "" {
		fmt.Fprintf(w, "limits: %s\n", r.Limits)
	}
	if r.Machine != "" {
		fmt.Fprintf(w, "machine at the start: %s\n", r.Machine)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, v := range r.Values {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, formatValue(v.Value), v.Unit)
	}
	if len(r.CPU) > 0 {
		keys := make([]string, 0, len(r.CPU))
		for k := range r.CPU {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "cpu %s\t%.2f\tcores\n", k, r.CPU[k])
		}
	}
	tw.Flush()
	if len(r.Latencies) > 0 {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "latency (ms)\tcount\tp50\tp95\tp99\tp99.9\tmax\t")
		keys := make([]string, 0, len(r.Latencies))
		for k := range r.Latencies {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := r.Latencies[k]
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n", k, s.Count, s.P50, s.P95, s.P99, s.P999, s.Max)
		}
		tw.Flush()
	}
	if len(r.Points) > 0 {
		fmt.Fprintln(w, "points:")
		for _, pt := range r.Points {
			fmt.Fprintf(w, "  %s\n", pointLine(pt))
			fmt.Fprintf(w, "    CPU cores: %s\n    machine: %s\n", cpuLine(pt.CPU), pt.Machine)
			if fc := pt.Frames; fc != nil {
				fmt.Fprintf(w, "    frames written: %.2f per stored message, %.2f messages per frame\n", fc.PerStoredMessage, fc.MessagesPerFrame)
			}
			fmt.Fprintf(w, "    per second, acks answered / p99 ms of the sends intended in it: %s\n", timelineLine(pt.Timeline))
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if r.Failed {
		fmt.Fprintln(w, "RESULT: FAILED")
	}
}

func formatValue(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	return fmt.Sprintf("%.2f", v)
}

// writeJSON writes results to path.
func writeJSON(path string, results []*Result) error {
	raw, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(raw, '\n'), 0o644)
}

// cpuLine formats CPU cores by component.
func cpuLine(cpu map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(cpu) {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, cpu[k]))
	}
	return strings.Join(parts, ", ")
}
