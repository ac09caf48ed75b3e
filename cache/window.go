package cache

import (
	"fmt"
	"sort"
	"time"

	"github.com/switchboard-chat/switchboard/chat"
)

// window is a room's newest messages, in seq order, each with its
// encoding, in their state as of the room's event head. Seqs have gaps
// where updates to messages (SPEC §13) took theirs, but no message of the
// room newer than the oldest held is missing. It is never modified once
// made: a change makes a new one, so readers need no lock.
type window struct {
	msgs  []chat.EncodedMessage
	index map[string]int // message id → position in msgs
	// head is the room's head version read before the window was read
	// from Postgres: the window holds every event up to it.
	head float64
	// complete: msgs begin with the room's first message (or the room has
	// none), so a query reaching below them is answered too.
	complete bool
	names    float64   // the "names" version the encodings carry
	loaded   time.Time // when the window was last read whole from Postgres
}

// newWindow makes a window of msgs, the newest of a room in seq order,
// read with at most size asked for after head was read.
func newWindow(msgs []chat.EncodedMessage, head, names float64, size int, loaded time.Time) (*window, error) {
	w := &window{head: head, names: names, loaded: loaded, complete: len(msgs) < size || msgs[0].Seq == 1}
	return w, w.fill(msgs, nil)
}

// fill sets msgs to prev followed by msgs.
func (w *window) fill(msgs, prev []chat.EncodedMessage) error {
	w.msgs = append(append(make([]chat.EncodedMessage, 0, len(prev)+len(msgs)), prev...), msgs...)
	w.index = make(map[string]int, len(w.msgs))
	for i, m := range w.msgs {
		if i > 0 && m.Seq <= w.msgs[i-1].Seq {
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

// usable reports whether w holds every event up to head with the names
// of version names, and is young enough.
func (w *window) usable(head, names float64, maxAge time.Duration) bool {
	return w.head >= head && w.names == names && time.Since(w.loaded) < maxAge
}

// extend returns a window that also holds evs, the room's events after
// w.head in seq order read after head was: new messages are appended
// (the oldest dropped to keep at most size) and raise the reply count of
// their parents held; an update replaces the message it changed with the
// state it carries. Events w holds already (the window may have been read
// after more than its head) are skipped.
func (w *window) extend(evs []chat.RoomEvent, head float64, size int) (*window, error) {
	var newer []chat.EncodedMessage
	counts := map[string]int{}
	changed := map[string]chat.EncodedMessage{}
	for _, ev := range evs {
		switch {
		case ev.Kind != chat.KindMessage:
			changed[ev.Message.ID] = ev.Message
		case ev.Seq > w.last():
			newer = append(newer, ev.Message)
			if ev.Message.ParentID != nil {
				counts[*ev.Message.ParentID]++
			}
		}
	}
	prev := w.msgs
	if drop := len(prev) + len(newer) - size; drop > 0 {
		prev = prev[drop:]
	}
	nw := &window{head: max(w.head, head), names: w.names, loaded: w.loaded, complete: w.complete && len(prev) == len(w.msgs)}
	if len(counts) > 0 || len(changed) > 0 {
		prev = append([]chat.EncodedMessage(nil), prev...) // entries are shared with w
		for i := range prev {
			// A changed message's state is as new as the events read,
			// its reply count included.
			if m, ok := changed[prev[i].ID]; ok {
				prev[i] = m
			} else if n := counts[prev[i].ID]; n > 0 {
				m := prev[i].Message
				m.ReplyCount += n
				prev[i] = chat.Encode(m)
			}
		}
		for i := range newer {
			if m, ok := changed[newer[i].ID]; ok {
				newer[i] = m
			}
		}
	}
	return nw, nw.fill(newer, prev)
}

// seqBefore answers SeqBefore from the window; ok is false when the answer
// may lie below what it holds. created_at is taken after the room's seq
// is, under the same row lock (storage: save_messages), so it grows with
// seq: the first message after since is found by binary search.
func (w *window) seqBefore(since time.Time) (seq int64, ok bool) {
	i := sort.Search(len(w.msgs), func(i int) bool { return w.msgs[i].CreatedAt.After(since) })
	switch {
	case i == 0 && !w.complete:
		return 0, false
	case i == len(w.msgs):
		return int64(w.head), true
	}
	return w.msgs[i].Seq - 1, true
}

// after returns the limit oldest messages with a seq above afterSeq; ok
// is false when some may be older than the window holds.
func (w *window) after(afterSeq int64, limit int) (_ []chat.EncodedMessage, ok bool) {
	i := sort.Search(len(w.msgs), func(i int) bool { return w.msgs[i].Seq > afterSeq })
	if i == 0 && !w.complete && (len(w.msgs) == 0 || w.msgs[0].Seq > afterSeq+1) {
		return nil, false
	}
	j := min(i+limit, len(w.msgs))
	return w.msgs[i:j:j], true
}

// before returns the limit newest messages with a seq below beforeSeq;
// ok is false when some may be older than the window holds.
func (w *window) before(beforeSeq int64, limit int) (_ []chat.EncodedMessage, ok bool) {
	j := sort.Search(len(w.msgs), func(i int) bool { return w.msgs[i].Seq >= beforeSeq })
	i := j - limit
	if i < 0 {
		if !w.complete {
			return nil, false
		}
		i = 0
	}
	return w.msgs[i:j:j], true
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
