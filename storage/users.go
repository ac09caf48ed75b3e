package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

const profileColumns = `id, username, display_name, phone, phone_verified, sms_notify, slack_user_id, created_at`

func scanProfile(row pgx.Row) (chat.Profile, error) {
	var p chat.Profile
	var id int64
	err := row.Scan(&id, &p.Username, &p.DisplayName, &p.Phone, &p.PhoneVerified, &p.SMSNotify, &p.SlackUserID, &p.CreatedAt)
	p.ID = formatID(id)
	p.CreatedAt = p.CreatedAt.UTC()
	return p, err
}

// CreateUser stores a new account. A username taken in any letter case is a
// conflict.
func (s *Store) CreateUser(ctx context.Context, username, passwordHash, displayName string) (chat.Profile, error) {
	p, err := scanProfile(s.db.QueryRow(ctx,
		`INSERT INTO users (username, password_hash, display_name) VALUES ($1, $2, $3) RETURNING `+profileColumns,
		username, passwordHash, displayName))
	if isUniqueViolation(err, "users_username_key") {
		return chat.Profile{}, chat.Errorf(chat.CodeConflict, "username %q is taken", username)
	}
	return p, wrap("create user", err)
}

// Credentials returns the account named username and its password hash. A
// guest account (no password) or an unknown name is chat.ErrNotFound.
func (s *Store) Credentials(ctx context.Context, username string) (chat.Profile, string, error) {
	var hash *string
	var p chat.Profile
	var id int64
	err := s.db.QueryRow(ctx,
		`SELECT `+profileColumns+`, password_hash FROM users WHERE lower(username) = lower($1)`, username).
		Scan(&id, &p.Username, &p.DisplayName, &p.Phone, &p.PhoneVerified, &p.SMSNotify, &p.SlackUserID, &p.CreatedAt, &hash)
	p.ID = formatID(id)
	p.CreatedAt = p.CreatedAt.UTC()
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && hash == nil) {
		return chat.Profile{}, "", chat.ErrNotFound
	}
	if err != nil {
		return chat.Profile{}, "", wrap("credentials", err)
	}
	return p, *hash, nil
}

// Profile returns the account with the given id.
func (s *Store) Profile(ctx context.Context, userID string) (chat.Profile, error) {
	id, err := parseID(userID)
	if err != nil {
		return chat.Profile{}, err
	}
	p, err := scanProfile(s.db.QueryRow(ctx, `SELECT `+profileColumns+` FROM users WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Profile{}, chat.ErrNotFound
	}
	return p, wrap("profile", err)
}

// UserByUsername returns the public view of the account named username.
func (s *Store) UserByUsername(ctx context.Context, username string) (chat.User, error) {
	p, err := scanProfile(s.db.QueryRow(ctx, `SELECT `+profileColumns+` FROM users WHERE lower(username) = lower($1)`, username))
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.User{}, chat.ErrNotFound
	}
	return p.User, wrap("user by username", err)
}

// NewSession starts a session for userID (SPEC §3: one login or register
// and every token pair refreshed from it) with its first refresh token, and
// returns the session's id. A session is a refresh-token family.
func (s *Store) NewSession(ctx context.Context, userID string, refreshHash []byte, expires time.Time) (string, error) {
	id, err := parseID(userID)
	if err != nil {
		return "", err
	}
	var session string
	err = s.db.QueryRow(ctx, `
		INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
		VALUES ($1, $2, gen_random_uuid(), $3) RETURNING family_id::text`,
		refreshHash, id, expires).Scan(&session)
	return session, wrap("new session", err)
}

// RotateRefreshToken spends the token with hash old and stores newHash in its
// place, in the same session, in one transaction. It returns the owner's id
// and the session. Presenting a spent token ends its session (every token
// of the family is revoked) and returns the owner, the session and
// chat.ErrRefreshReused, so that the caller ends the session elsewhere too.
func (s *Store) RotateRefreshToken(ctx context.Context, old, newHash []byte, expires time.Time) (userID, session string, err error) {
	var uid int64
	var used, revoked *time.Time
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var exp time.Time
		err := tx.QueryRow(ctx,
			`SELECT user_id, family_id::text, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
			old).Scan(&uid, &session, &used, &revoked, &exp)
		if errors.Is(err, pgx.ErrNoRows) {
			return chat.ErrRefreshInvalid
		}
		if err != nil {
			return err
		}
		if revoked != nil || !exp.After(time.Now()) {
			return chat.ErrRefreshInvalid
		}
		if used != nil {
			return nil // revoked below, outside this transaction
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1`, old); err != nil {
			return err
		}
		_, err = tx.Exec(ctx,
			`INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)`,
			newHash, uid, session, expires)
		return err
	})
	if err != nil {
		return "", "", wrap("rotate refresh token", err)
	}
	if used != nil {
		if err := s.EndSession(ctx, session); err != nil {
			return "", "", err
		}
		return formatID(uid), session, chat.ErrRefreshReused
	}
	return formatID(uid), session, nil
}

// EndedSince returns the sessions that ended at or after since, each with
// the moment it ended: the durable record the Redis denylist is rebuilt
// from after Redis lost it.
func (s *Store) EndedSince(ctx context.Context, since time.Time) ([]chat.EndedSession, error) {
	rows, err := s.db.Query(ctx, `
		SELECT family_id::text, max(revoked_at) FROM refresh_tokens
		 WHERE revoked_at >= $1 GROUP BY family_id`, since)
	if err != nil {
		return nil, wrap("ended sessions", err)
	}
	var ended []chat.EndedSession
	var e chat.EndedSession
	_, err = pgx.ForEachRow(rows, []any{&e.ID, &e.EndedAt}, func() error {
		ended = append(ended, e)
		return nil
	})
	return ended, wrap("ended sessions", err)
}

// EndSession revokes every refresh token of a session.
func (s *Store) EndSession(ctx context.Context, session string) error {
	_, err := s.db.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1::uuid AND revoked_at IS NULL`, session)
	return wrap("end session", err)
}

// EndSessions ends every session of userID but except ("" ends them all)
// and returns the ids of the sessions it ended.
func (s *Store) EndSessions(ctx context.Context, userID, except string) ([]string, error) {
	id, err := parseID(userID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		WITH ended AS (
			UPDATE refresh_tokens SET revoked_at = now()
			WHERE user_id = $1 AND revoked_at IS NULL AND family_id::text <> $2
			RETURNING family_id)
		SELECT DISTINCT family_id::text FROM ended`, id, except)
	if err != nil {
		return nil, wrap("end sessions", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, wrap("end sessions", err)
}

// LiveSessions returns the sessions of userID that have not ended.
func (s *Store) LiveSessions(ctx context.Context, userID string) ([]string, error) {
	id, err := parseID(userID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT DISTINCT family_id::text FROM refresh_tokens WHERE user_id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return nil, wrap("live sessions", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return ids, wrap("live sessions", err)
}

// SessionOf returns the session of the refresh token with the given hash if
// it belongs to userID, or chat.ErrNotFound.
func (s *Store) SessionOf(ctx context.Context, userID string, refreshHash []byte) (string, error) {
	id, err := parseID(userID)
	if err != nil {
		return "", err
	}
	var session string
	err = s.db.QueryRow(ctx, `SELECT family_id::text FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2`,
		refreshHash, id).Scan(&session)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", chat.ErrNotFound
	}
	return session, wrap("session of", err)
}

// PasswordHash returns the password hash of userID; a guest (no password)
// is chat.ErrNotFound.
func (s *Store) PasswordHash(ctx context.Context, userID string) (string, error) {
	id, err := parseID(userID)
	if err != nil {
		return "", err
	}
	var hash *string
	err = s.db.QueryRow(ctx, `SELECT password_hash FROM users WHERE id = $1`, id).Scan(&hash)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && hash == nil) {
		return "", chat.ErrNotFound
	}
	if err != nil {
		return "", wrap("password hash", err)
	}
	return *hash, nil
}

// SetPasswordHash replaces the password hash of userID.
func (s *Store) SetPasswordHash(ctx context.Context, userID, hash string) error {
	id, err := parseID(userID)
	if err != nil {
		return err
	}
	tag, err := s.db.Exec(ctx, `UPDATE users SET password_hash = $2 WHERE id = $1`, id, hash)
	if err == nil && tag.RowsAffected() == 0 {
		return chat.ErrNotFound
	}
	return wrap("set password hash", err)
}
