package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Open loop: every stream of requests (a connection's sends, a reader's
// requests) follows a schedule of intended times fixed in advance, whatever
// the server answers. A request is sent at its intended time, or at once if
// the generator is already past it; its latency counts from the intended
// time, so a generator held up by a slow server (or by itself) shows that
// wait instead of hiding it (coordinated omission). How late each request
// left is reported too: a generator that could not keep its own schedule
// makes the point invalid.
//
// Closed loop (the mode of the first version of this tool, kept for
// comparison behind -loop closed) sends the next request when an answer
// frees a slot: the offered rate then follows the server, and by Little's
// law the latency is in-flight / throughput whatever the server does.

// loopMode labels every result.
const (
	openLoop   = "open loop"
	closedLoop = "closed loop"
)

// arrival is how a stream spaces its requests.
type arrival string

const (
	// arrivalConstant: one request every 1/rate, from a random phase (so
	// that streams do not fire in step).
	arrivalConstant arrival = "constant"
	// arrivalPoisson: exponential gaps of mean 1/rate (a Poisson process).
	arrivalPoisson arrival = "poisson"
)

func parseArrival(s string) (arrival, error) {
	switch a := arrival(s); a {
	case arrivalConstant, arrivalPoisson:
		return a, nil
	}
	return "", fmt.Errorf("-arrival %q: constant or poisson", s)
}

// maxStreamRate is the highest rate one connection (ws) or one user (HTTP)
// is given by default, so that every user stays under the server's abuse
// limits at their defaults: 10 sends/s with bursts of 20 per connection,
// 5 HTTP writes/s with bursts of 20 per user. Constant arrivals never
// exceed the rate; Poisson arrivals at 6 of 10/s empty a 20-token bucket
// for fewer than 1 in 2,000 connections over 10 s (7/s: none in a
// simulation of 2,000; 9/s: 14).
func maxStreamRate(a arrival, http bool) float64 {
	r := 8.0
	if a == arrivalPoisson {
		r = 6
	}
	if http {
		r /= 2
	}
	return r
}

// schedule yields the intended times of one stream.
type schedule struct {
	kind  arrival
	gap   float64 // mean gap, ns
	first time.Time
	next  time.Time
	n     int64 // constant: arrivals so far
	rng   *rand.Rand
}

// newSchedule starts a stream of rate requests per second at start. A rate
// of 0 or less never fires.
func newSchedule(kind arrival, rate float64, start time.Time, rng *rand.Rand) *schedule {
	s := &schedule{kind: kind, gap: math.Inf(1), rng: rng}
	if rate > 0 {
		s.gap = float64(time.Second) / rate
	}
	switch {
	case math.IsInf(s.gap, 1):
		s.first = start.Add(100 * 365 * 24 * time.Hour)
	case kind == arrivalPoisson:
		s.first = start.Add(s.expGap()) // memoryless: the first gap is like any other
	default:
		s.first = start.Add(time.Duration(rng.Float64() * s.gap))
	}
	s.next = s.first
	return s
}

func (s *schedule) expGap() time.Duration { return time.Duration(s.rng.ExpFloat64() * s.gap) }

// Next returns the next intended time and moves past it.
func (s *schedule) Next() time.Time {
	t := s.next
	s.n++
	switch {
	case math.IsInf(s.gap, 1):
	case s.kind == arrivalPoisson:
		s.next = t.Add(s.expGap())
	default:
		// From the first arrival, not the last, so that rounding never
		// accumulates.
		s.next = s.first.Add(time.Duration(float64(s.n) * s.gap))
	}
	return t
}

// clock is time as the pacer sees it; tests replace it.
type clock interface {
	Now() time.Time
	// SleepUntil returns at t, or false at once if ctx ends first.
	SleepUntil(ctx context.Context, t time.Time) bool
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// pace calls send with each intended time of s before end, at that time or
// at once when already past it, and calls late with how late each call
// started. It returns how many it sent; it stops early when ctx ends, when
// send returns false, or after max sends (0: no bound).
func pace(ctx context.Context, clk clock, s *schedule, end time.Time, max int, late func(time.Duration), send func(intended time.Time) bool) int {
	n := 0
	for max == 0 || n < max {
		t := s.Next()
		if !t.Before(end) {
			return n
		}
		if !clk.SleepUntil(ctx, t) {
			return n
		}
		late(clk.Now().Sub(t))
		n++
		if !send(t) {
			return n
		}
	}
	return n
}

// keptUp says whether a generator whose lateness is l kept its schedule:
// its p99 within limit.
func keptUp(l Summary, limit time.Duration) bool {
	return l.Count == 0 || l.P99 <= float64(limit)/float64(time.Millisecond)
}
