package storage

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file holds the look-ups of the inbound webhooks (SPEC §8, §9): who
// sent an SMS or a Slack message, and into which room it goes.

// UserByPhone returns the account whose verified phone (E.164, as stored by
// PATCH /api/v1/me) is phone. An unverified number is nobody's.
func (s *Store) UserByPhone(ctx context.Context, phone string) (chat.User, error) {
	return s.userWhere(ctx, "user by phone", `phone = $1 AND phone_verified`, phone)
}

// UserBySlackID returns the account whose slack_user_id is slackUserID.
// Slack guests are not found here: they carry no slack_user_id (see
// SlackGuest), so a real account can still claim the id later.
func (s *Store) UserBySlackID(ctx context.Context, slackUserID string) (chat.User, error) {
	return s.userWhere(ctx, "user by slack id", `slack_user_id = $1`, slackUserID)
}

func (s *Store) userWhere(ctx context.Context, op, cond string, arg any) (chat.User, error) {
	var u chat.User
	var id int64
	err := s.db.QueryRow(ctx, `SELECT id, username, display_name FROM users WHERE `+cond, arg).
		Scan(&id, &u.Username, &u.DisplayName)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.User{}, chat.ErrNotFound
	}
	u.ID = formatID(id)
	return u, wrap(op, err)
}

// LastActiveRoom returns the room userID most recently posted in, from any
// client, among the rooms they belong to (room_members.last_active_at, set
// by posting only: joining or being added does not count). A user who
// posted in none of their rooms gets chat.ErrNotFound.
func (s *Store) LastActiveRoom(ctx context.Context, userID string) (chat.Room, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Room{}, err
	}
	var r chat.Room
	var id int64
	err = s.db.QueryRow(ctx, `
		SELECT `+roomColumns+`, m.read_seq
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		WHERE m.user_id = $1 AND m.last_active_at IS NOT NULL
		ORDER BY m.last_active_at DESC, m.room_id DESC LIMIT 1`, uid).
		Scan(&id, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived, &r.LastReadSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.ErrNotFound
	}
	r.ID = formatID(id)
	r.Unread = max(r.LastSeq-r.LastReadSeq, 0)
	return r, wrap("last active room", err)
}

// RoomBySlackChannel returns the room bridged to the Slack channel
// channelID. Should several rooms name the same channel, the oldest wins.
func (s *Store) RoomBySlackChannel(ctx context.Context, channelID string) (chat.Room, error) {
	var r chat.Room
	var id int64
	err := s.db.QueryRow(ctx, `SELECT `+roomColumns+` FROM rooms r WHERE r.slack_channel_id = $1 ORDER BY r.id LIMIT 1`, channelID).
		Scan(&id, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.ErrNotFound
	}
	r.ID = formatID(id)
	return r, wrap("room by slack channel", err)
}

// SlackGuest returns the guest account that speaks for the Slack user
// slackUserID (username "slack-" + the id in lower case, display name the
// id and " (Slack)", no password, so it cannot log in), creating it on
// first use, and makes it a member of roomID. Concurrent calls for the same
// Slack user end with one account. An id that makes no valid username is a
// bad request. A username of that form taken by an account that can log in
// is a conflict: the guest never borrows a real account.
func (s *Store) SlackGuest(ctx context.Context, slackUserID, roomID string) (chat.User, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return chat.User{}, err
	}
	username := chat.SlackGuestPrefix + strings.ToLower(slackUserID)
	if slackUserID == "" || !chat.ValidUsername(username) {
		return chat.User{}, chat.Errorf(chat.CodeBadRequest, "Slack user id %q makes no valid guest username", slackUserID)
	}
	display, err := chat.NormalizeDisplayName(slackUserID + " (Slack)")
	if err != nil {
		return chat.User{}, err
	}
	var u chat.User
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var id int64
		// ON CONFLICT waits for a concurrent insert of the same name to
		// commit; the SELECT after it, a new statement with a new snapshot,
		// then sees that row.
		err := tx.QueryRow(ctx, `
			INSERT INTO users (username, display_name) VALUES ($1, $2)
			ON CONFLICT ((lower(username))) DO NOTHING
			RETURNING id, username, display_name`, username, display).
			Scan(&id, &u.Username, &u.DisplayName)
		if errors.Is(err, pgx.ErrNoRows) {
			var hash *string
			err = tx.QueryRow(ctx, `SELECT id, username, display_name, password_hash FROM users WHERE lower(username) = $1`,
				username).Scan(&id, &u.Username, &u.DisplayName, &hash)
			if err == nil && hash != nil {
				return chat.Errorf(chat.CodeConflict, "username %q belongs to an account that is not a Slack guest", username)
			}
		}
		if err != nil {
			return err
		}
		u.ID = formatID(id)
		_, err = tx.Exec(ctx, `INSERT INTO room_members (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, rid, id)
		if isCode(err, "23503") { // foreign_key_violation: no such room
			return chat.ErrNotFound
		}
		return err
	})
	if err != nil {
		return chat.User{}, wrap("slack guest", err)
	}
	return u, nil
}
