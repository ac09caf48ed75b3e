package storagetest

import (
	"context"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// Poster posts messages as hub.Hub does, minus the live delivery: it
// validates, then stores through the real storage. Tests of the webhooks
// and jobs that post use it where no hub runs.
type Poster struct{ Store *storage.Store }

// Post validates nm and saves it.
func (p Poster) Post(ctx context.Context, nm chat.NewMessage) (chat.Message, bool, error) {
	if err := nm.Validate(); err != nil {
		return chat.Message{}, false, err
	}
	return p.Store.SaveMessage(ctx, nm)
}
