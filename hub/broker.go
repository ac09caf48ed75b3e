package hub

import (
	"context"
	"sync"
)

// Event is what travels between nodes: an encoded server→client frame for
// one room. Stored messages carry their seq so that every node can put them
// back in order; ephemeral events (typing) have Seq 0 and are never stored.
type Event struct {
	Room  string
	Seq   int64  // > 0: a stored message; 0: ephemeral
	From  string // user id of whoever caused it; ephemeral events skip that user's connections
	Frame []byte // encoded once by the publisher, sent to clients as is
}

// Broker carries events between the hubs of all nodes. Publish may deliver
// an event to the publishing hub too, late, twice or out of order: the hub
// drops repeats by seq and fetches gaps from the store.
type Broker interface {
	// Publish sends ev to every hub subscribed to ev.Room.
	Publish(ctx context.Context, ev Event) error
	// Subscribe asks for the events of room; the hub calls it when a room
	// gets its first local connection.
	Subscribe(ctx context.Context, room string) error
	// Unsubscribe undoes Subscribe when a room's last local connection goes.
	Unsubscribe(ctx context.Context, room string) error
	// PublishControl sends ctl to every other hub. A broker that cannot
	// reach them keeps it and sends it once it can.
	PublishControl(ctx context.Context, ctl Control) error
}

// Receiver is what a broker delivers to; *Hub is one.
type Receiver interface {
	Receive(ev Event)
	ReceiveControl(ctl Control)
}

// LocalBroker is an in-process Broker: it delivers every event to each
// attached receiver. With several hubs attached it stands in for a cluster
// of nodes in tests.
type LocalBroker struct {
	mu        sync.RWMutex
	receivers []Receiver
}

// Attach adds r to the receivers of every later Publish.
func (b *LocalBroker) Attach(r Receiver) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.receivers = append(b.receivers, r)
}

// Publish delivers ev to every attached receiver before it returns.
func (b *LocalBroker) Publish(_ context.Context, ev Event) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, r := range b.receivers {
		r.Receive(ev)
	}
	return nil
}

// PublishControl delivers ctl to every attached receiver before it
// returns (the publishing hub applied it already; applying twice is
// harmless).
func (b *LocalBroker) PublishControl(_ context.Context, ctl Control) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, r := range b.receivers {
		r.ReceiveControl(ctl)
	}
	return nil
}

// Subscribe does nothing: a LocalBroker delivers every room to every hub,
// and hubs ignore rooms without local connections.
func (b *LocalBroker) Subscribe(context.Context, string) error { return nil }

// Unsubscribe does nothing, as Subscribe.
func (b *LocalBroker) Unsubscribe(context.Context, string) error { return nil }
