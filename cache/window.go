package cache

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// window is a room's newest messages, in seq order with no gap, each with
// its encoding. It is never modified once made: a change makes a new one,
// so readers need no lock.
type window struct {
	msgs  []entry
	index map[string]int // message id → position in msgs
	// complete: msgs begin with the room's first message (or the room has
	// none), so a query reaching below them is answered too.
	complete bool
	names    float64   // the "names" version the encodings carry
	loaded   time.Time // when the window was last read whole from Postgres
}

type entry struct {
	msg chat.Message
	enc chat.EncodedMessage
}

// newWindow makes a window of msgs, the newest of a room in seq order,
// read with at most size asked for.
func newWindow(msgs []chat.Message, names float64, size int, loaded time.Time) (*window, error) {
	w := &window{names: names, loaded: loaded, complete: len(msgs) < size || msgs[0].Seq == 1}
	return w, w.fill(msgs, nil)
}

// fill sets msgs from prev (already encoded) followed by the new messages.
func (w *window) fill(msgs []chat.Message, prev []entry) error {
	w.msgs = append(make([]entry, 0, len(prev)+len(msgs)), prev...)
	for i := range msgs {
		enc, err := encode(&msgs[i])
		if err != nil {
			return err
		}
		w.msgs = append(w.msgs, entry{msgs[i], enc})
	}
	w.index = make(map[string]int, len(w.msgs))
	for i, e := range w.msgs {
		if i > 0 && e.msg.Seq != w.msgs[i-1].msg.Seq+1 {
			return fmt.Errorf("cache: room %s: seq %d follows %d", e.msg.RoomID, e.msg.Seq, w.msgs[i-1].msg.Seq)
		}
		w.index[e.msg.ID] = i
	}
	return nil
}

// last is the seq of the newest message, 0 in an empty room.
func (w *window) last() int64 {
	if len(w.msgs) == 0 {
		return 0
	}
	return w.msgs[len(w.msgs)-1].msg.Seq
}

// first is the seq of the oldest message held, 1 in an empty room.
func (w *window) first() int64 {
	if len(w.msgs) == 0 {
		return 1
	}
	return w.msgs[0].msg.Seq
}

// usable reports whether w holds every message up to head with the names
// of version names, and is young enough.
func (w *window) usable(head, names float64, maxAge time.Duration) bool {
	return float64(w.last()) >= head && w.names == names && time.Since(w.loaded) < maxAge
}

// extend returns a window with newer (the messages after w.last(), in seq
// order) appended, the oldest dropped to keep at most size, and the reply
// count of each parent held raised by its new replies.
func (w *window) extend(newer []chat.Message, size int) (*window, error) {
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
		prev = append([]entry(nil), prev...) // entries are shared with w
		for i := range prev {
			if n := counts[prev[i].msg.ID]; n > 0 {
				prev[i].msg.ReplyCount += n
				enc, err := encode(&prev[i].msg)
				if err != nil {
					return nil, err
				}
				prev[i].enc = enc
			}
		}
	}
	return nw, nw.fill(newer, prev)
}

// at returns the position of seq in msgs, which must hold it.
func (w *window) at(seq int64) int { return int(seq - w.first()) }

// page answers q from the window; ok is false when the answer may include
// messages older than the window holds.
func (w *window) page(q chat.HistoryQuery) (_ []chat.EncodedMessage, ok bool) {
	first, last := w.first(), w.last()
	if !q.Since.IsZero() {
		// created_at is taken after the room's seq is, under the same row
		// lock (storage: save_message), so it grows with seq: the first
		// message after Since is found by binary search.
		i := sort.Search(len(w.msgs), func(i int) bool { return w.msgs[i].msg.CreatedAt.After(q.Since) })
		if i == 0 && !w.complete {
			return nil, false
		}
		q.After, q.Seq = true, first+int64(i)-1
	}
	var lo, hi int64
	if q.After {
		lo, hi = q.Seq+1, min(q.Seq+int64(q.Limit), last)
	} else {
		hi = min(q.Seq-1, last)
		lo = hi - int64(q.Limit) + 1
	}
	if lo < first {
		if !w.complete {
			return nil, false
		}
		lo = first
	}
	if lo > hi {
		return []chat.EncodedMessage{}, true
	}
	page := make([]chat.EncodedMessage, 0, hi-lo+1)
	for _, e := range w.msgs[w.at(lo) : w.at(hi)+1] {
		page = append(page, e.enc)
	}
	return page, true
}

// thread answers a thread query from the window; ok is false when the
// parent is not held. Every reply comes after its parent, so a window
// holding the parent holds all its replies.
func (w *window) thread(parentID string, afterSeq int64, limit int) (chat.EncodedMessage, []chat.EncodedMessage, bool) {
	i, ok := w.index[parentID]
	if !ok {
		return chat.EncodedMessage{}, nil, false
	}
	replies := []chat.EncodedMessage{}
	for _, e := range w.msgs[i+1:] {
		if len(replies) == limit {
			break
		}
		if e.msg.ParentID != nil && *e.msg.ParentID == parentID && e.msg.Seq > afterSeq {
			replies = append(replies, e.enc)
		}
	}
	return w.msgs[i].enc, replies, true
}

func encode(m *chat.Message) (chat.EncodedMessage, error) {
	b, err := json.Marshal(m)
	return chat.EncodedMessage{Seq: m.Seq, JSON: b}, err
}

func encodeAll(msgs []chat.Message) ([]chat.EncodedMessage, error) {
	out := make([]chat.EncodedMessage, len(msgs))
	for i := range msgs {
		var err error
		if out[i], err = encode(&msgs[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
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
