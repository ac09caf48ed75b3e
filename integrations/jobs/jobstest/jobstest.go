// Package jobstest gives tests of job handlers the parts of the real job
// queue they call, on the test Redis (brokertest.Current) under a prefix
// of their own.
package jobstest

import (
	"context"
	"errors"
	"testing"

	"github.com/switchboard-chat/switchboard/broker/brokertest"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// Breaker returns the circuit breaker of the API name on a queue of t's
// own, and removes what it stored in Redis when t ends.
func Breaker(t testing.TB, name string) *jobs.Breaker {
	t.Helper()
	rdb := brokertest.Current().Client()
	prefix := brokertest.Prefix()
	t.Cleanup(func() {
		rdb.Del(context.Background(), prefix+"breakers")
		rdb.Close()
	})
	q, err := jobs.New(jobs.Config{Redis: rdb, Prefix: prefix})
	if err != nil {
		t.Fatalf("jobstest: %v", err)
	}
	return q.NewBreaker(name)
}

// RequireHeld fails t unless err defers a run, without it counting as a
// failure, because another run holds its work (integrations.ErrHeld).
func RequireHeld(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, integrations.ErrHeld) || jobs.IsPermanent(err) {
		t.Fatalf("got %v, want a run deferred for another that holds the work", err)
	}
}
