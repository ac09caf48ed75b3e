package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Breaker is a circuit breaker around one external API. After five
// consecutive failures it opens: tasks that would call the API wait
// (Wait, no attempt used) instead of failing one after another, and after
// Config.BreakerTimeout one trial call decides whether it closes again.
// Permanent errors (the API answered, the request was wrong) do not count
// as failures.
type Breaker struct {
	q  *Queue
	cb *gobreaker.CircuitBreaker[struct{}]
}

// ErrOpen is wrapped by the error Do returns while the breaker is open.
var ErrOpen = errors.New("circuit breaker open")

// NewBreaker returns the breaker for the API name (e.g. "twilio"). Its state
// is on /metrics and, through Redis, in `switchboard jobs stats`.
func (q *Queue) NewBreaker(name string) *Breaker {
	b := &Breaker{q: q}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:         name,
		Timeout:      q.cfg.BreakerTimeout,
		ReadyToTrip:  func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= 5 },
		IsSuccessful: func(err error) bool { return err == nil || IsPermanent(err) },
		OnStateChange: func(name string, _, to gobreaker.State) {
			q.log.Warn("circuit breaker", slog.String("api", name), slog.String("state", to.String()))
			q.publishBreaker(name, to)
		},
	})
	q.publishBreaker(name, gobreaker.StateClosed)
	return b
}

// Do calls fn unless the breaker is open. A failure that leaves the breaker
// open (the one that trips it, a failed trial call) is returned as a Wait
// like a refused call, so that an outage costs the tasks no attempts.
func (b *Breaker) Do(fn func() error) error {
	_, err := b.cb.Execute(func() (struct{}, error) { return struct{}{}, fn() })
	switch {
	case errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests):
		return Wait(fmt.Errorf("%s: %w", b.cb.Name(), ErrOpen), b.q.cfg.BreakerTimeout)
	case err != nil && !IsPermanent(err) && b.cb.State() == gobreaker.StateOpen:
		return Wait(fmt.Errorf("%s: %w: %w", b.cb.Name(), ErrOpen, err), b.q.cfg.BreakerTimeout)
	}
	return err
}

func (q *Queue) breakersKey() string { return q.cfg.Prefix + "breakers" }

// publishBreaker records a state change for metrics and the jobs CLI.
func (q *Queue) publishBreaker(name string, s gobreaker.State) {
	q.metrics.breaker(name, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	value := s.String() + " " + strconv.FormatInt(time.Now().Unix(), 10)
	if err := q.cfg.Redis.HSet(ctx, q.breakersKey(), name, value).Err(); err != nil {
		q.log.WarnContext(ctx, "record circuit breaker state", slog.String("api", name), slog.Any("error", err))
	}
}

// BreakerState is the last state a worker reported for one API's breaker.
type BreakerState struct {
	API   string    `json:"api"`
	State string    `json:"state"` // closed, half-open or open
	Since time.Time `json:"since"`
}

// Breakers returns the breaker states workers last reported.
func (q *Queue) Breakers(ctx context.Context) ([]BreakerState, error) {
	m, err := q.cfg.Redis.HGetAll(ctx, q.breakersKey()).Result()
	if err != nil {
		return nil, err
	}
	var out []BreakerState
	for api, v := range m {
		state, unix, _ := strings.Cut(v, " ")
		sec, _ := strconv.ParseInt(unix, 10, 64)
		out = append(out, BreakerState{API: api, State: state, Since: time.Unix(sec, 0).UTC()})
	}
	return out, nil
}
