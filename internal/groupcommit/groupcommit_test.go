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

// TestQueue: a call alone runs at once, alone; calls that arrive while a
// batch runs go together in the next, in the order they came, at most Max
// at a time; every call is answered once.
func TestQueue(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	q := &groupcommit.Queue[*call]{Max: 4, Run: func(batch []*call) {
		if batch[0].n == 0 {
			close(started)
			<-release // hold the first batch while the others queue
		}
		mu.Lock()
		ns := make([]int, len(batch))
		for i, c := range batch {
			ns[i] = c.n
		}
		batches = append(batches, ns)
		mu.Unlock()
		for _, c := range batch {
			close(c.done)
		}
	}}
	calls := make([]*call, 11)
	for i := range calls {
		calls[i] = &call{n: i, done: make(chan struct{})}
		q.Add(calls[i])
		if i == 0 {
			<-started
		}
	}
	close(release)
	for _, c := range calls {
		<-c.done
	}
	require.Equal(t, [][]int{{0}, {1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10}}, batches)

	// Idle again: the next call runs at once, alone.
	c := &call{n: 11, done: make(chan struct{})}
	q.Add(c)
	<-c.done
	require.Equal(t, []int{11}, batches[len(batches)-1])
}

// TestQueueGather: with Gather, a batch that follows one during which
// calls arrived waits for company, so a call that comes during that wait
// joins it; a call that finds the queue idle still runs at once.
func TestQueueGather(t *testing.T) {
	t.Parallel()
	const gather = 300 * time.Millisecond
	started, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var batches [][]int
	q := &groupcommit.Queue[*call]{Gather: gather, Run: func(batch []*call) {
		if batch[0].n == 0 {
			close(started)
			<-release
		}
		mu.Lock()
		ns := make([]int, len(batch))
		for i, c := range batch {
			ns[i] = c.n
		}
		batches = append(batches, ns)
		mu.Unlock()
		for _, c := range batch {
			close(c.done)
		}
	}}
	newCall := func(n int) *call { return &call{n: n, done: make(chan struct{})} }
	first, second, third := newCall(0), newCall(1), newCall(2)
	q.Add(first)
	<-started
	q.Add(second) // arrives while the first batch runs
	close(release)
	<-first.done
	q.Add(third) // arrives while the second batch gathers
	<-second.done
	<-third.done
	mu.Lock()
	require.Equal(t, [][]int{{0}, {1, 2}}, batches)
	mu.Unlock()

	alone := newCall(3)
	start := time.Now()
	q.Add(alone)
	<-alone.done
	require.Less(t, time.Since(start), gather/2, "a call on an idle queue waited")
}
