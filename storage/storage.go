// Package storage is Switchboard's only durable store: users, tokens, rooms,
// members and their cursors, messages and replies, all in Postgres through a
// pgx connection pool. Every query takes parameters; there is no ORM.
//
// Errors a client may see are *chat.Error values (not found, forbidden,
// conflict, bad request); anything else is an internal failure. When the
// database cannot be reached, methods return errors wrapping
// chat.ErrUnavailable so callers can refuse a send with "unavailable".
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/groupcommit"
)

// Store runs Switchboard's queries on a pool.
type Store struct {
	db     *pgxpool.Pool
	outbox Outbox
	// phoneCodes queues the job of a verification code; nil: SMS is off
	// (WithPhoneCodes).
	phoneCodes *phoneCodes

	saver groupcommit.Queue[*saveCall] // SaveMessage calls waiting for a batch (save.go)
}

// Option configures a Store.
type Option func(*Store)

// New returns a Store on db. The schema must already be migrated.
func New(db *pgxpool.Pool, opts ...Option) *Store {
	s := &Store{db: db}
	s.saver.Max, s.saver.Run, s.saver.Gather = maxSaveBatch, s.saveBatch, saveGather
	for _, o := range opts {
		o(s)
	}
	return s
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// EnsureDatabase connects to the maintenance database of the server that url
// names and creates url's database when it does not exist yet.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("parse database url: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to maintenance database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database: %w", err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	// Another node creating it at the same moment makes duplicate_database or
	// a unique violation on the catalogue: either way the database exists.
	if err != nil && !isCode(err, "42P04") && !isUniqueViolation(err, "pg_database_datname_index") {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// queryRower is what a pool and a transaction share for one-row queries.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// parseID turns an opaque id from a client into a key; anything but the
// exact spelling of an issued id names nothing, so it is "not found".
func parseID(id string) (int64, error) {
	n, ok := chat.ParseID(id)
	if !ok {
		return 0, chat.ErrNotFound
	}
	return n, nil
}

func formatID(n int64) string { return chat.FormatID(n) }

func isCode(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// isUniqueViolation reports a unique_violation on the named constraint or
// index.
func isUniqueViolation(err error, constraint string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == constraint
}

// wrap names the operation and marks connection failures as unavailable.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *chat.Error
	if errors.As(err, &ce) {
		return err
	}
	var netErr net.Error
	var connErr *pgconn.ConnectError
	// io.ErrUnexpectedEOF: the server's end of a pooled connection closed
	// while a statement was on its way.
	if errors.As(err, &netErr) || errors.As(err, &connErr) || errors.Is(err, io.ErrUnexpectedEOF) ||
		pgconn.SafeToRetry(err) || isCode(err, "57P01") || isCode(err, "57P03") {
		return fmt.Errorf("%s: %w: %w", op, chat.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
