package groupcommit_test

import (
	"sync"
	"testing"

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
