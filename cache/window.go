package cache

import (
	"fmt"
	"sort"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// window is a room's newest messages, in seq order with no gap, each with
// its encoding. It is never modified once made: a change makes a new one,
// so readers need no lock.
type window struct {
	msgs  []chat.EncodedMessage
	index map[string]int // message id → position in msgs
	// complete: msgs begin with the room's first message (or the room has
	// none), so a query reaching below them is answered too.
	complete bool
	names    float64   // the "names" version the encodings carry
	loaded   time.Time // when the window was last read whole from Postgres
}

// newWindow makes a window of msgs, the newest of a room in seq order,
// read with at most size asked for.
func newWindow(msgs []chat.EncodedMessage, names float64, size int, loaded time.Time) (*window, error) {
	w := &window{names: names, loaded: loaded, complete: len(msgs) < size || msgs[0].Seq == 1}
	return w, w.fill(msgs, nil)
}

// fill sets msgs to prev followed by msgs.
func (w *window) fill(msgs, prev []chat.EncodedMessage) error {
	w.msgs = append(append(make([]chat.EncodedMessage, 0, len(prev)+len(msgs)), prev...), msgs...)
	w.index = make(map[string]int, len(w.msgs))
	for i, m := range w.msgs {
		if i > 0 && m.Seq != w.msgs[i-1].Seq+1 {
			return fmt.Errorf("cache: room %s: seq %d follows %d", m.RoomID, m.Seq, w.msgs[i-1].Seq)
		}
		w.index[m.ID] = i
	}
	return nil
}

// last is the seq of the newest message, 0 in an empty room.
func (w *window) last() int64 {
	if len(w.msgs) == 0 {
		return 0
	}
	return w.msgs[len(w.msgs)-1].Seq
}

// first is the seq of the oldest message held, 1 in an empty room.
func (w *window) first() int64 {
	if len(w.msgs) == 0 {
		return 1
	}
	return w.msgs[0].Seq
}

// usable reports whether w holds every message up to head with the names
// of version names, and is young enough.
func (w *window) usable(head, names float64, maxAge time.Duration) bool {
	return float64(w.last()) >= head && w.names == names && time.Since(w.loaded) < maxAge
}

// extend returns a window with newer (the messages after w.last(), in seq
// order) appended, the oldest dropped to keep at most size, and the reply
// count of each parent held raised by its new replies.
func (w *window) extend(newer []chat.EncodedMessage, size int) (*window, error) {
	prev := w.msgs
	if drop := len(prev) + len(newer) - size; drop > 0 {
		prev = prev[drop:]
	}
	nw := &window{names: w.names, loaded: w.loaded, complete: w.complete && len(prev) == len(w.msgs)}
	counts := map[string]int{}
	for _, m := range newer {
		if m.ParentID != nil {
			counts[*m.ParentID]++
		}
	}
	if len(counts) > 0 {
		prev = append([]chat.EncodedMessage(nil), prev...) // entries are shared with w
		for i := range prev {
			if n := counts[prev[i].ID]; n > 0 {
				m := prev[i].Message
				m.ReplyCount += n
				prev[i] = chat.Encode(m)
			}
		}
	}
	return nw, nw.fill(newer, prev)
}

// at returns the position of seq in msgs, which must hold it.
func (w *window) at(seq int64) int { return int(seq - w.first()) }

// seqBefore answers SeqBefore from the window; ok is false when the answer
// may lie below what it holds. created_at is taken after the room's seq
// is, under the same row lock (storage: save_message), so it grows with
// seq: the first message after since is found by binary search.
func (w *window) seqBefore(since time.Time) (seq int64, ok bool) {
	i := sort.Search(len(w.msgs), func(i int) bool { return w.msgs[i].CreatedAt.After(since) })
	if i == 0 && !w.complete {
		return 0, false
	}
	return w.first() + int64(i) - 1, true
}

// between returns the messages with seqs lo..hi (clamped to what the room
// has); ok is false when some may be older than the window holds.
func (w *window) between(lo, hi int64) (_ []chat.EncodedMessage, ok bool) {
	hi = min(hi, w.last())
	if lo < w.first() {
		if !w.complete {
			return nil, false
		}
		lo = w.first()
	}
	if lo > hi {
		return []chat.EncodedMessage{}, true
	}
	return w.msgs[w.at(lo) : w.at(hi)+1 : w.at(hi)+1], true
}

// message returns the message id if the window holds it.
func (w *window) message(id string) (chat.EncodedMessage, bool) {
	i, ok := w.index[id]
	if !ok {
		return chat.EncodedMessage{}, false
	}
	return w.msgs[i], true
}

// replies answers a thread's replies from the window; ok is false when
// the parent is not held. Every reply comes after its parent, so a window
// holding the parent holds all its replies.
func (w *window) replies(parentID string, afterSeq int64, limit int) ([]chat.EncodedMessage, bool) {
	i, ok := w.index[parentID]
	if !ok {
		return nil, false
	}
	replies := []chat.EncodedMessage{}
	for _, m := range w.msgs[i+1:] {
		if len(replies) == limit {
			break
		}
		if m.ParentID != nil && *m.ParentID == parentID && m.Seq > afterSeq {
			replies = append(replies, m)
		}
	}
	return replies, true
}

// maxThreadReplies is how many replies a cached thread holds at most.
const maxThreadReplies = 1000

// thread is a message older than its room's window, with its replies. It
// is used while its room's head is the one read before it was loaded.
type thread struct {
	parent   chat.EncodedMessage
	all      []chat.EncodedMessage // in seq order
	complete bool                  // all holds every reply
	head     float64
	names    float64
	loaded   time.Time
}

func (t *thread) usable(head, names float64, maxAge time.Duration) bool {
	return t.head == head && t.names == names && time.Since(t.loaded) < maxAge
}

// replies returns up to limit replies after afterSeq; ok is false when
// more may exist than t holds.
func (t *thread) replies(afterSeq int64, limit int) (_ []chat.EncodedMessage, ok bool) {
	i := sort.Search(len(t.all), func(i int) bool { return t.all[i].Seq > afterSeq })
	rest := t.all[i:]
	if len(rest) >= limit {
		return rest[:limit:limit], true
	}
	return rest, t.complete
}
