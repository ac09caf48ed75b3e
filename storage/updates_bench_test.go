package storage_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// BenchmarkChangeVersusSend compares, one call at a time, a send with an
// edit and with a reaction added and removed (SPEC §13): each takes the
// room's lock and next seq in one statement, as a send does, on a server
// with the integrations on. An update should cost no more than a send.
func BenchmarkChangeVersusSend(b *testing.B) {
	for _, name := range []string{"send", "edit", "react"} {
		b.Run(name, func(b *testing.B) {
			bundle := setup(b)
			bundle.store = storage.New(bundle.pool, storage.WithOutbox(storage.Outbox{SMS: true, Slack: true}))
			alice, bob := bundle.user(b, "alice"), bundle.user(b, "bob")
			r := bundle.room(b, alice.ID, "general", chat.Public)
			bundle.join(b, bob.ID, r.ID)
			nm := chat.NewMessage{RoomID: r.ID, SenderID: alice.ID, Body: "hello", Source: chat.SourceWeb}
			m, _, err := bundle.store.SaveMessage(bundle.ctx, nm)
			require.NoError(b, err)
			i := 0
			b.ResetTimer()
			for b.Loop() {
				i++
				switch name {
				case "send":
					_, _, err = bundle.store.SaveMessage(bundle.ctx, nm)
				case "edit":
					_, _, err = bundle.store.UpdateMessage(bundle.ctx, chat.Update{Action: chat.ActionEdit,
						MessageID: m.ID, UserID: alice.ID, Body: fmt.Sprint("hello ", i)})
				case "react":
					action := chat.ActionReact
					if i%2 == 0 {
						action = chat.ActionUnreact
					}
					_, _, err = bundle.store.UpdateMessage(bundle.ctx, chat.Update{Action: action,
						MessageID: m.ID, UserID: bob.ID, Emoji: "👍"})
				}
				require.NoError(b, err)
			}
		})
	}
}
