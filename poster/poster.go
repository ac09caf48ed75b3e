// Package poster is the one way a message enters Switchboard, from a
// WebSocket send, the HTTP API, an SMS or a Slack event alike: it checks
// the message, stores it, announces it to the caches of every node and
// publishes it for live delivery. Changes to a message (edit, delete,
// reactions: SPEC §13) take the same way, as room events of their own. It
// needs only the store, the cache's announcement and a publisher, so the
// job worker posts without a hub.
package poster

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
)

// Store stores messages and changes to them.
type Store interface {
	SaveMessage(ctx context.Context, m chat.NewMessage) (chat.Message, bool, error)
	UpdateMessage(ctx context.Context, u chat.Update) (chat.RoomEvent, bool, error)
}

// Announcer is told of each stored message before its sender is answered;
// *cache.Cache is one.
type Announcer interface {
	MessageStored(ctx context.Context, roomID string, seq int64) error
}

// Publisher delivers an event live on every node: *hub.Hub (this node's
// connections, then the broker), or the broker alone where no hub runs.
type Publisher interface {
	Publish(ctx context.Context, ev hub.Event) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, ev hub.Event) error

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, ev hub.Event) error { return f(ctx, ev) }

// Config configures a Poster. Store is required.
type Config struct {
	Store Store
	// Publisher delivers stored messages live; nil stores them without
	// live delivery (tools and tests: clients get them from history).
	Publisher Publisher
	// Announcer, if not nil, is told of every stored message.
	Announcer Announcer
	// Registerer registers the counter of stored messages; nil leaves it
	// unregistered.
	Registerer prometheus.Registerer
	// Logger; nil discards logs.
	Logger *slog.Logger
}

// Poster stores and delivers messages.
type Poster struct {
	cfg     Config
	log     *slog.Logger
	stored  *prometheus.CounterVec
	updated *prometheus.CounterVec
}

// New returns a Poster on cfg.
func New(cfg Config) (*Poster, error) {
	if cfg.Store == nil {
		return nil, errors.New("poster: Config needs a Store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Poster{cfg: cfg, log: cfg.Logger, stored: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_messages_in_total", Help: "Messages stored, by source."}, []string{"source"}),
		updated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_message_updates_total", Help: "Changes to messages stored, by kind."}, []string{"kind"})}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{p.stored, p.updated} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

// Post validates and stores nm and delivers it to its room. created is
// false when it repeats an earlier client_id or external id: that message
// is returned and nothing is delivered again. Once stored, the message is
// acknowledged whatever happens to its announcement and publication: a
// failure there only delays what other nodes see (they fetch what they
// missed from Postgres).
func (p *Poster) Post(ctx context.Context, nm chat.NewMessage) (msg chat.Message, created bool, err error) {
	if err := nm.Validate(); err != nil {
		return chat.Message{}, false, err
	}
	msg, created, err = p.cfg.Store.SaveMessage(ctx, nm)
	if err != nil || !created {
		return msg, created, err
	}
	p.stored.WithLabelValues(msg.Source).Inc()
	// The stored message must be delivered and announced even if the
	// caller gave up meanwhile.
	ctx = context.WithoutCancel(ctx)
	if p.cfg.Announcer != nil {
		if err := p.cfg.Announcer.MessageStored(ctx, msg.RoomID, msg.Seq); err != nil {
			p.log.WarnContext(ctx, "announce message failed", slog.String("room", msg.RoomID), slog.Any("error", err))
		}
	}
	if p.cfg.Publisher == nil {
		return msg, true, nil
	}
	if err := p.cfg.Publisher.Publish(ctx, hub.MessageEvent(chat.Encode(msg))); err != nil {
		p.log.WarnContext(ctx, "publish message failed", slog.String("room", msg.RoomID),
			slog.Int64("seq", msg.Seq), slog.Any("error", err))
	}
	return msg, true, nil
}

// Update validates and stores a change to a message and delivers it to
// the message's room as an update event. It returns the message's new
// state; a request that changes nothing (changed false) stores and
// delivers nothing. As with Post, a stored change is acknowledged whatever
// happens to its announcement and publication.
func (p *Poster) Update(ctx context.Context, u chat.Update) (msg chat.Message, changed bool, err error) {
	if err := u.Validate(); err != nil {
		return chat.Message{}, false, err
	}
	ev, changed, err := p.cfg.Store.UpdateMessage(ctx, u)
	if err != nil || !changed {
		return ev.Message.Message, changed, err
	}
	p.updated.WithLabelValues(ev.Kind).Inc()
	ctx = context.WithoutCancel(ctx)
	room := ev.Message.RoomID
	if p.cfg.Announcer != nil {
		if err := p.cfg.Announcer.MessageStored(ctx, room, ev.Seq); err != nil {
			p.log.WarnContext(ctx, "announce update failed", slog.String("room", room), slog.Any("error", err))
		}
	}
	if p.cfg.Publisher != nil {
		if err := p.cfg.Publisher.Publish(ctx, hub.UpdateEvent(ev, u.UserID)); err != nil {
			p.log.WarnContext(ctx, "publish update failed", slog.String("room", room),
				slog.Int64("seq", ev.Seq), slog.Any("error", err))
		}
	}
	return ev.Message.Message, true, nil
}
