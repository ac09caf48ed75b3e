package storage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// BenchmarkSaveMessage measures what the outbox adds to a send: "off" is a
// server without integrations, "quiet" has them on in a room that needs no
// job (one more statement, no row), "sms" writes an outbox row per message.
func BenchmarkSaveMessage(b *testing.B) {
	for _, tc := range []struct {
		name   string
		outbox bool
		sms    bool
	}{{"off", false, false}, {"quiet", true, false}, {"sms", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			bundle := setup(b)
			if tc.outbox {
				bundle.store = storage.New(bundle.pool, storage.WithOutbox(storage.Outbox{SMS: true, Slack: true}))
			}
			alice, bob := bundle.user(b, "alice"), bundle.user(b, "bob")
			r := bundle.room(b, alice.ID, "general", chat.Public)
			bundle.join(b, bob.ID, r.ID)
			if tc.sms {
				bundle.wantSMS(b, bob.ID, "+15550001")
			}
			nm := chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: "hello", Source: chat.SourceWeb}
			b.ResetTimer()
			for b.Loop() {
				_, _, err := bundle.store.SaveMessage(bundle.ctx, nm)
				require.NoError(b, err)
			}
		})
	}
}
