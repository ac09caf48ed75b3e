package storagetest

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// Fixture is a Store on a database of the test's own (NewPool) with the
// data that the tests of its consumers (webhooks, jobs) start from. Pool is
// there for the SQL that checks what was really written.
type Fixture struct {
	Ctx   context.Context
	Pool  *pgxpool.Pool
	Store *storage.Store
}

// NewFixture returns a Fixture for t.
func NewFixture(t testing.TB) *Fixture {
	t.Helper()
	pool := NewPool(t)
	return &Fixture{Ctx: t.Context(), Pool: pool, Store: storage.New(pool)}
}

// User creates an account that can log in, its display name the username
// in capitals.
func (f *Fixture) User(t testing.TB, name string) chat.User {
	t.Helper()
	p, err := f.Store.CreateUser(f.Ctx, name, "hash", strings.ToUpper(name))
	if err != nil {
		t.Fatalf("storagetest: create user %s: %v", name, err)
	}
	return p.User
}

// Room creates a room of creator's.
func (f *Fixture) Room(t testing.TB, creator chat.User, name, visibility string) chat.Room {
	t.Helper()
	r, err := f.Store.CreateRoom(f.Ctx, creator.ID, name, visibility)
	if err != nil {
		t.Fatalf("storagetest: create room %s: %v", name, err)
	}
	return r
}

// Say stores a message of sender's in room, as the web client posts it.
func (f *Fixture) Say(t testing.TB, room chat.Room, sender chat.User, body string) chat.Message {
	t.Helper()
	m, _, err := f.Store.SaveMessage(f.Ctx, chat.NewMessage{RoomID: room.ID, SenderID: sender.ID, Body: body, Source: chat.SourceWeb})
	if err != nil {
		t.Fatalf("storagetest: save message: %v", err)
	}
	return m
}

// Stored reads the messages of one source straight from the table, oldest
// first (MessagesFrom).
func (f *Fixture) Stored(t testing.TB, source string) []StoredMessage {
	t.Helper()
	return MessagesFrom(t, f.Pool, source)
}

// LapseClaims makes every claim on outside work lapse (SMS, codes, runs),
// as when the runs that took them died a lease ago.
func (f *Fixture) LapseClaims(t testing.TB) {
	t.Helper()
	_, err := f.Pool.Exec(f.Ctx, `
		UPDATE sms_throttle SET claimed_until = now() - interval '1 second' WHERE claim IS NOT NULL;
		UPDATE phone_codes SET claimed_until = now() - interval '1 second' WHERE claimed_until IS NOT NULL;
		UPDATE job_runs SET claimed_until = now() - interval '1 second' WHERE claim IS NOT NULL`)
	if err != nil {
		t.Fatalf("storagetest: lapse claims: %v", err)
	}
}
