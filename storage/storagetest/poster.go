package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/poster"
	"github.com/switchboard-chat/switchboard/storage"
)

// NewPoster returns the real poster on store, without live delivery: tests
// of the webhooks and jobs that post use it where no hub runs.
func NewPoster(t testing.TB, store *storage.Store) *poster.Poster {
	t.Helper()
	p, err := poster.New(poster.Config{Store: store})
	require.NoError(t, err)
	return p
}
