// Package fakeapi is the skeleton of the fake vendor HTTP APIs that tests
// run on 127.0.0.1 (twiliotest, slacktest): a server that counts requests,
// records the calls it accepted, answers scripted failures in order, can
// hold requests unanswered, and lets a test wait for a number of requests
// or calls. The vendor packages keep what is the vendor's: paths,
// credentials, and the shape of answers and errors.
package fakeapi

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// Config is what a vendor's fake adds to the skeleton.
type Config struct {
	// Serve answers a request that is not held; it takes scripted failures
	// with Server.NextFailure and records what it accepts with
	// Server.Accept.
	Serve http.HandlerFunc
	// Held answers a held request once it is released (the call was not
	// accepted, as when its client gave up first).
	Held func(http.ResponseWriter)
}

// Server is a fake API on 127.0.0.1 that records the calls it accepts as
// Call values and is scripted with Failure values.
type Server[Call, Failure any] struct {
	cfg Config
	srv *httptest.Server

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when requests or accepted change
	requests int
	accepted []Call
	failures []Failure
	hold     chan struct{} // non-nil: requests wait for it to close
}

// New starts a fake that answers with cfg and stops it when t ends.
func New[Call, Failure any](t testing.TB, cfg Config) *Server[Call, Failure] {
	s := &Server[Call, Failure]{cfg: cfg, changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the fake's base URL, http://127.0.0.1:port.
func (s *Server[Call, Failure]) URL() string { return s.srv.URL }

// Fail makes the next len(fs) requests that reach a scripted answer fail as
// given, in order.
func (s *Server[Call, Failure]) Fail(fs ...Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures = append(s.failures, fs...)
}

// NextFailure takes the next scripted failure, if there is one.
func (s *Server[Call, Failure]) NextFailure() (f Failure, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) == 0 {
		return f, false
	}
	f = s.failures[0]
	s.failures = s.failures[1:]
	return f, true
}

// Accept records c as an accepted call and returns how many there are.
func (s *Server[Call, Failure]) Accept(c Call) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accepted = append(s.accepted, c)
	s.changedLocked()
	return len(s.accepted)
}

// Accepted returns the calls accepted so far, oldest first.
func (s *Server[Call, Failure]) Accepted() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.accepted...)
}

// Requests counts every request, accepted, failed or held.
func (s *Server[Call, Failure]) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Hold makes requests wait, without an answer, until the returned function
// is called; then they get Config.Held's answer and nothing is accepted.
func (s *Server[Call, Failure]) Hold() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.hold = ch
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.hold = nil
			s.mu.Unlock()
			close(ch)
		})
	}
}

// waitTimeout bounds WaitRequests and WaitAccepted.
const waitTimeout = 15 * time.Second

// WaitRequests waits until the fake got at least n requests, and fails t
// after 15 s.
func (s *Server[Call, Failure]) WaitRequests(t testing.TB, n int) {
	t.Helper()
	s.wait(t, "requests", n, func() int { return s.requests })
}

// WaitAccepted waits until the fake accepted at least n calls, and fails t
// after 15 s.
func (s *Server[Call, Failure]) WaitAccepted(t testing.TB, n int) {
	t.Helper()
	s.wait(t, "accepted calls", n, func() int { return len(s.accepted) })
}

// wait waits until count, read under mu, reaches n.
func (s *Server[Call, Failure]) wait(t testing.TB, what string, n int, count func() int) {
	t.Helper()
	timeout := time.NewTimer(waitTimeout)
	defer timeout.Stop()
	for {
		s.mu.Lock()
		got, changed := count(), s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("fakeapi: %d %s after %v, want %d", got, what, waitTimeout, n)
		}
	}
}

// changedLocked wakes the waiters; the caller holds mu.
func (s *Server[Call, Failure]) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server[Call, Failure]) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.changedLocked()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
		s.cfg.Held(w)
		return
	}
	s.cfg.Serve(w, r)
}
