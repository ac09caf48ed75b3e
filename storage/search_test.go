package storage_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/storage"
)

func TestRoomQueries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// The per-room index queries of web searches, from what Postgres
	// answers for them: every lexeme in its room, phrases as "all words",
	// -words gone (querytree).
	for _, tc := range []struct{ search, want string }{
		{`cat dog`, `'7 cat' & '7 dog'`},
		{`"black cat" -dog`, `'7 black' & '7 cat'`},
		{`cat or "big dog"`, `'7 cat' | '7 big' & '7 dog'`},
		{`"a b c" d`, `'7 a' & '7 b' & '7 c' & '7 d'`},
		{`it's "o'clock"`, `'7 it' & '7 s' & '7 o' & '7 clock'`},
	} {
		var tree string
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT querytree(websearch_to_tsquery('switchboard', $1))`,
			tc.search).Scan(&tree))
		got, err := storage.RoomQueries(tree, []int64{7, 12})
		require.NoError(t, err)
		require.Len(t, got, 2)
		var same bool
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT $1::tsquery = $2::tsquery`, got[0], tc.want).Scan(&same))
		require.True(t, same, "%s: got %s, want %s", tc.search, got[0], tc.want)
		require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT $1::tsquery::text`, got[1]).Scan(new(string)))
		require.Contains(t, got[1], "'12 ")
	}
	// Quotes inside a lexeme stay doubled; operators inside one stay text.
	got, err := storage.RoomQueries(`'o''clock<->' <-> 'x' <2> 'y'`, []int64{3})
	require.NoError(t, err)
	require.Equal(t, []string{`'3 o''clock<->' & '3 x' & '3 y'`}, got)
	_, err = storage.RoomQueries(`'open`, []int64{3})
	require.Error(t, err)
}
