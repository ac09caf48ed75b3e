package storagetest

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// StoredMessage is a row of the messages table as webhook tests check it.
type StoredMessage struct {
	Room, Sender, Body, Source, ExternalID string
}

// MessagesFrom reads the messages of one source straight from the table,
// oldest first: what a webhook really stored.
func MessagesFrom(t testing.TB, pool *pgxpool.Pool, source string) []StoredMessage {
	t.Helper()
	rows, err := pool.Query(t.Context(), `
		SELECT r.name, u.username, m.body, m.source, COALESCE(m.external_id, '')
		FROM messages m JOIN rooms r ON r.id = m.room_id JOIN users u ON u.id = m.sender_id
		WHERE m.source = $1 ORDER BY m.id`, source)
	if err != nil {
		t.Fatalf("stored messages: %v", err)
	}
	defer rows.Close()
	out := []StoredMessage{}
	for rows.Next() {
		var s StoredMessage
		if err := rows.Scan(&s.Room, &s.Sender, &s.Body, &s.Source, &s.ExternalID); err != nil {
			t.Fatalf("stored messages: %v", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("stored messages: %v", err)
	}
	return out
}
