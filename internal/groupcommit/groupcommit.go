// Package groupcommit runs calls in batches, one batch at a time, as a
// database's group commit does: a call that finds no batch running starts
// one at once, alone, and calls that arrive while a batch runs go together
// in the next. Under light load nothing waits for company; under heavy
// load batches grow by themselves. No goroutine runs while no call waits.
package groupcommit

import (
	"slices"
	"sync"
	"time"
)

// Queue batches calls of type T. Set Max, Run and Gather before the first
// Add and do not copy a Queue after that.
type Queue[T any] struct {
	// Max bounds a batch; zero means no bound.
	Max int
	// Run handles one batch. Batches run one at a time, in the order their
	// calls were added, on a goroutine of the queue's; Run must answer
	// every call of its batch (each caller waits for its own answer).
	Run func(batch []T)
	// Gather, if not zero, is how long a batch waits for company when
	// calls arrived while the batch before it ran (the sign of a busy
	// queue) and it has room for more. Where a batch costs mostly per
	// batch, as a database commit does, fewer and larger batches take less
	// CPU, which a loaded machine gives back as less queueing. A call that
	// finds the queue idle never waits. (Postgres's commit_delay is the
	// same idea.)
	Gather time.Duration

	mu      sync.Mutex
	queue   []T
	running bool // a goroutine is taking batches
}

// Add queues c for the next batch, starting one at once if none runs.
func (q *Queue[T]) Add(c T) {
	q.mu.Lock()
	q.queue = append(q.queue, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	}
}

// run takes batches until the queue is empty.
func (q *Queue[T]) run() {
	for first := true; ; first = false {
		if !first && q.Gather > 0 && q.busy() {
			time.Sleep(q.Gather)
		}
		q.mu.Lock()
		n := len(q.queue)
		if q.Max > 0 {
			n = min(n, q.Max)
		}
		if n == 0 {
			q.running = false
			q.queue = nil
			q.mu.Unlock()
			return
		}
		batch := slices.Clone(q.queue[:n])
		q.queue = q.queue[n:]
		q.mu.Unlock()
		q.Run(batch)
	}
}

// busy reports whether calls wait and the next batch has room for more.
func (q *Queue[T]) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.queue)
	return n > 0 && (q.Max == 0 || n < q.Max)
}
