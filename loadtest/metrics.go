package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the node's /metrics and returns each metric's value by
// name, summed over labels (histograms: their sample count), and each
// labelled counter's series by name{label="value",...} as well.
func (n *node) scrape(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", n.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: HTTP %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(families))
	for name, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.Gauge != nil:
				out[name] += m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] += m.GetCounter().GetValue()
				if len(m.GetLabel()) > 0 {
					out[seriesName(name, m.GetLabel())] = m.GetCounter().GetValue()
				}
			case m.Untyped != nil:
				out[name] += m.GetUntyped().GetValue()
			case m.Histogram != nil:
				out[name] += float64(m.GetHistogram().GetSampleCount())
				out[name+"_sum"] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out, nil
}

// seriesName spells a series as /metrics does: name{a="x",b="y"}.
func seriesName(name string, labels []*dto.LabelPair) string {
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = fmt.Sprintf("%s=%q", l.GetName(), l.GetValue())
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// cpuSample is CPU time used so far, by component.
type cpuSample struct {
	at    time.Time
	times map[string]float64 // seconds
}

// sampleCPU reads the CPU time of the server nodes (from their /metrics,
// so it works for servers the load test did not start), of every postgres
// and redis-server process on the machine (from /proc), and of the load
// generator itself.
func sampleCPU(ctx context.Context, nodes []*node) cpuSample {
	s := cpuSample{at: time.Now(), times: map[string]float64{}}
	for _, n := range nodes {
		if m, err := n.scrape(ctx); err == nil {
			s.times["server"] += m["process_cpu_seconds_total"]
		}
	}
	for comm, secs := range procCPU("postgres", "redis-server") {
		s.times[strings.TrimSuffix(comm, "-server")] = secs
	}
	if shards := redisCPU(); len(shards) > 1 {
		for addr, secs := range shards {
			s.times["redis "+addr] = secs
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.times["loadtest"] = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	if busy, ok := machineBusy(); ok {
		s.times["machine"] = busy
	}
	return s
}

// components are what "other" is the machine's CPU without.
var components = []string{"server", "postgres", "redis", "loadtest"}

// machineBusy is the CPU time the whole machine has spent busy (every
// state of /proc/stat's cpu line but idle and iowait), in seconds.
func machineBusy() (float64, bool) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, false
	}
	var busy float64
	for i, v := range f[1:] {
		if i == 3 || i == 4 || i >= 8 { // idle, iowait; guest time is in user already
			continue
		}
		n, _ := strconv.ParseFloat(v, 64)
		busy += n
	}
	return busy / clockTicks, true
}

// machineState says how busy the machine was: load average and, where the
// kernel has it, the share of time some task waited for a CPU.
func machineState() string {
	s := fmt.Sprintf("%d CPUs", runtime.NumCPU())
	if raw, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(raw)); len(f) >= 3 {
			s += fmt.Sprintf(", load average %s %s %s", f[0], f[1], f[2])
		}
	}
	if raw, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		line, _, _ := strings.Cut(string(raw), "\n")
		var avg10, avg60 float64
		if _, err := fmt.Sscanf(line, "some avg10=%f avg60=%f", &avg10, &avg60); err == nil {
			s += fmt.Sprintf(", CPU pressure (some task waiting for a CPU) %.0f %% of the last 10 s, %.0f %% of the last minute", avg10, avg60)
		}
	}
	return s
}

// cores returns the CPU cores used by each component between a and b.
func cores(a, b cpuSample) map[string]float64 {
	wall := b.at.Sub(a.at).Seconds()
	out := map[string]float64{}
	if wall <= 0 {
		return out
	}
	for k, v := range b.times {
		// Postgres backends of other clients come and go; a process that
		// exited takes its time with it, so clamp at zero.
		out[k] = max(v-a.times[k], 0) / wall
	}
	if m, ok := out["machine"]; ok {
		// Everything else on the machine: other people's processes, and
		// ours the load test does not name.
		other := m
		for _, c := range components {
			other -= out[c]
		}
		out["other"] = max(other, 0)
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux).
const clockTicks = 100

// procCPU sums utime+stime of the processes whose command is one of comms.
func procCPU(comms ...string) map[string]float64 {
	out := map[string]float64{}
	forProcs(func(comm, _ string, secs float64) {
		if slices.Contains(comms, comm) {
			out[comm] += secs
		}
	})
	return out
}

// redisCPU returns the CPU time of each redis-server process by the
// address it serves (the first word after the command in its command
// line), to show how a Redis Cluster's shards share the work.
func redisCPU() map[string]float64 {
	out := map[string]float64{}
	forProcs(func(comm, cmdline string, secs float64) {
		if f := strings.Fields(cmdline); comm == "redis-server" && len(f) > 1 {
			out[f[1]] += secs
		}
	})
	return out
}

// forProcs calls f with the command, command line and CPU seconds of every
// process in /proc.
func forProcs(f func(comm, cmdline string, secs float64)) {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		raw, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		s := string(raw)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		comm := s[open+1 : closing]
		// Fields after the command: state is field 3; utime and stime
		// are fields 14 and 15.
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(path), "cmdline"))
		f(comm, strings.ReplaceAll(string(cmdline), "\x00", " "), (ut+st)/clockTicks)
	}
}
