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

// SaveRefreshToken stores the hash of a new refresh token. family is empty
// for the first token of a login, which starts a new family.
func (s *Store) SaveRefreshToken(ctx context.Context, userID string, hash []byte, family string, expires time.Time) error {
	id, err := parseID(userID)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `
		INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
		VALUES ($1, $2, COALESCE(NULLIF($3, '')::uuid, gen_random_uuid()), $4)`,
		hash, id, family, expires)
	return wrap("save refresh token", err)
}

// ErrRefreshReused is returned by RotateRefreshToken when a spent token is
// presented again; its whole family has then been revoked.
var ErrRefreshReused = chat.Errorf(chat.CodeUnauthorized, "refresh token was already used; all sessions of this login are revoked")

// ErrRefreshInvalid is returned for an unknown, expired or revoked token.
var ErrRefreshInvalid = chat.Errorf(chat.CodeUnauthorized, "invalid refresh token")

// RotateRefreshToken spends the token with hash old and stores newHash in its
// place, in the same family, in one transaction. It returns the owner's id.
// Presenting a spent token revokes its family and returns ErrRefreshReused.
func (s *Store) RotateRefreshToken(ctx context.Context, old, newHash []byte, expires time.Time) (string, error) {
	var userID string
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var uid int64
		var family string
		var used, revoked *time.Time
		var exp time.Time
		err := tx.QueryRow(ctx,
			`SELECT user_id, family_id::text, used_at, revoked_at, expires_at FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE`,
			old).Scan(&uid, &family, &used, &revoked, &exp)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrRefreshInvalid
		}
		if err != nil {
			return err
		}
		if revoked != nil || !exp.After(time.Now()) {
			return ErrRefreshInvalid
		}
		if used != nil {
			return errReuse{family: family}
		}
		if _, err := tx.Exec(ctx, `UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1`, old); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			`INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at) VALUES ($1, $2, $3, $4)`,
			newHash, uid, family, expires); err != nil {
			return err
		}
		userID = formatID(uid)
		return nil
	})
	var reuse errReuse
	if errors.As(err, &reuse) {
		if err := s.RevokeRefreshFamily(ctx, reuse.family); err != nil {
			return "", err
		}
		return "", ErrRefreshReused
	}
	return userID, wrap("rotate refresh token", err)
}

type errReuse struct{ family string }

func (errReuse) Error() string { return "refresh token reuse" }

// RevokeRefreshFamily revokes every token of a family.
func (s *Store) RevokeRefreshFamily(ctx context.Context, family string) error {
	_, err := s.db.Exec(ctx, `UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL`, family)
	return wrap("revoke refresh family", err)
}

// RevokeRefreshToken revokes the family of the token with the given hash, if
// it exists and belongs to userID (logout).
func (s *Store) RevokeRefreshToken(ctx context.Context, userID string, hash []byte) error {
	id, err := parseID(userID)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `
		UPDATE refresh_tokens SET revoked_at = now()
		WHERE revoked_at IS NULL AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND user_id = $2)`,
		hash, id)
	return wrap("revoke refresh token", err)
}
