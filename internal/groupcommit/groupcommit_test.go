package groupcommit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/internal/groupcommit"
)

type call struct {
	n    int
	done chan struct{}
}

func newCall(n int) *call { return &call{n: n, done: make(chan struct{})} }

// recorder is a Queue's Run that records the numbers of each batch's calls
// and answers them. It holds the batch of call 0 until release is closed,
// and closes started when that batch begins, so that others queue behind
// it.
type recorder struct {
	started, release chan struct{}
	mu               sync.Mutex
	batches          [][]int
}

func newRecorder() *recorder {
	return &recorder{started: make(chan struct{}), release: make(chan struct{})}
}

func (r *recorder) run(batch []*call) {
	if batch[0].n == 0 {
		close(r.started)
		<-r.release
	}
	r.mu.Lock()
	ns := make([]int, len(batch))
	for i, c := range batch {
		ns[i] = c.n
	}
	r.batches = append(r.batches, ns)
	r.mu.Unlock()
	for _, c := range batch {
		close(c.done)
	}
}

func (r *recorder) recorded() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batches
}

// TestQueue: a call alone runs at once, alone; calls that arrive while a
// batch runs go together in the next, in the order they came, at most Max
// at a time; every call is answered once.
func TestQueue(t *testing.T) {
	t.Parallel()
	r := newRecorder()
	q := &groupcommit.Queue[*call]{Max: 4, Run: r.run}
	calls := make([]*call, 11)
	for i := range calls {
		calls[i] = newCall(i)
		q.Add(calls[i])
		if i == 0 {
			<-r.started
		}
	}
	close(r.release)
	for _, c := range calls {
		<-c.done
	}
	require.Equal(t, [][]int{{0}, {1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10}}, r.recorded())

	// Idle again: the next call runs at once, alone.
	c := newCall(11)
	q.Add(c)
	<-c.done
	batches := r.recorded()
	require.Equal(t, []int{11}, batches[len(batches)-1])
}

// TestQueueGather: with Gather, a batch that follows one during which
// calls arrived waits for company, so a call that comes during that wait
// joins it; a call that finds the queue idle still runs at once.
func TestQueueGather(t *testing.T) {
	t.Parallel()
	const gather = 300 * time.Millisecond
	r := newRecorder()
	q := &groupcommit.Queue[*call]{Gather: gather, Run: r.run}
	first, second, third := newCall(0), newCall(1), newCall(2)
	q.Add(first)
	<-r.started
	q.Add(second) // arrives while the first batch runs
	close(r.release)
	<-first.done
	q.Add(third) // arrives while the second batch gathers
	<-second.done
	<-third.done
	require.Equal(t, [][]int{{0}, {1, 2}}, r.recorded())

	alone := newCall(3)
	start := time.Now()
	q.Add(alone)
	<-alone.done
	require.Less(t, time.Since(start), gather/2, "a call on an idle queue waited")
}
