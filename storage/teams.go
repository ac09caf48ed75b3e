package storage

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// ErrArchived answers a send, edit or reaction in an archived room.
var ErrArchived = chat.Errorf(chat.CodeForbidden, "this room is archived: it is read-only")

var (
	errDirectClosed = chat.Errorf(chat.CodeForbidden, "nobody can join or be added to a direct room")
	errNotModerator = chat.Errorf(chat.CodeForbidden, "only the room's owner and admins may do that")
	errNotOwner     = chat.Errorf(chat.CodeForbidden, "only the room's owner may do that")
	errOutranked    = chat.Errorf(chat.CodeForbidden, "an admin cannot act on the owner or on other admins")
)

// checkNotBanned refuses, with msg, a user banned from the room.
func checkNotBanned(ctx context.Context, q queryRower, uid, rid int64, msg string) error {
	var banned bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM room_bans WHERE room_id = $1 AND user_id = $2)`,
		rid, uid).Scan(&banned); err != nil {
		return err
	}
	if banned {
		return chat.Errorf(chat.CodeForbidden, "%s", msg)
	}
	return nil
}

// roles is what a moderation step knows of a room: the roles of the actor
// and of the target ("" for a non-member). Nobody has owner or admin in a
// direct room, so nobody moderates one.
type roles struct {
	actor, target string
}

// lockRoles reads the roles of actor and target in room rid in tx,
// locking both memberships until tx ends so that two moderators acting at
// once see each other's change. An actor who is not a member gets the
// error of CheckMember; the target may be anyone.
func lockRoles(ctx context.Context, tx pgx.Tx, rid, aid, tid int64) (roles, error) {
	var r roles
	if err := checkMember(ctx, tx, aid, rid); err != nil {
		return r, err
	}
	rows, err := tx.Query(ctx, `SELECT user_id, role FROM room_members
		WHERE room_id = $1 AND user_id IN ($2, $3) ORDER BY user_id FOR UPDATE`, rid, aid, tid)
	if err != nil {
		return r, err
	}
	var uid int64
	var role string
	_, err = pgx.ForEachRow(rows, []any{&uid, &role}, func() error {
		if uid == aid {
			r.actor = role
		}
		if uid == tid {
			r.target = role
		}
		return nil
	})
	return r, err
}

// moderate checks that the actor may remove or ban the target: the owner
// acts on anyone else, an admin on members and non-members only.
func (r roles) moderate() error {
	switch {
	case r.actor == chat.RoleOwner && r.target != chat.RoleOwner:
		return nil
	case r.actor == chat.RoleAdmin && (r.target == chat.RoleMember || r.target == ""):
		return nil
	case r.actor == chat.RoleAdmin:
		return errOutranked
	default:
		return errNotModerator
	}
}

// parseIDs parses ids from clients; any bad one names nothing.
func parseIDs(ids ...string) ([]int64, error) {
	out := make([]int64, len(ids))
	for i, id := range ids {
		n, err := parseID(id)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

// Members lists the members of roomID with their roles, by username, if
// userID belongs to it.
func (s *Store) Members(ctx context.Context, userID, roomID string) ([]chat.Member, error) {
	ids, err := parseIDs(userID, roomID)
	if err != nil {
		return nil, err
	}
	if err := checkMember(ctx, s.db, ids[0], ids[1]); err != nil {
		return nil, wrap("members", err)
	}
	rows, err := s.db.Query(ctx, `
		SELECT u.id, u.username, u.display_name, m.role
		FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = $1 ORDER BY lower(u.username)`, ids[1])
	if err != nil {
		return nil, wrap("members", err)
	}
	members, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Member, error) {
		var m chat.Member
		var id int64
		err := row.Scan(&id, &m.User.Username, &m.User.DisplayName, &m.Role)
		m.User.ID = formatID(id)
		return m, err
	})
	return members, wrap("members", err)
}

// SetRole gives targetID the role in roomID on behalf of actorID, who must
// own the room. Giving "owner" hands the room over: the actor becomes an
// admin. It returns the target's member row.
func (s *Store) SetRole(ctx context.Context, actorID, roomID, targetID, role string) (chat.Member, error) {
	ids, err := parseIDs(actorID, roomID, targetID)
	if err != nil {
		return chat.Member{}, err
	}
	aid, rid, tid := ids[0], ids[1], ids[2]
	var m chat.Member
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, tid)
		switch {
		case err != nil:
			return err
		case r.actor != chat.RoleOwner:
			return errNotOwner
		case r.target == "":
			return chat.Errorf(chat.CodeNotFound, "that user is not a member of this room")
		case aid == tid:
			return chat.Errorf(chat.CodeBadRequest, "the owner hands the room to another member to stop owning it")
		}
		if role == chat.RoleOwner {
			if _, err := tx.Exec(ctx, `UPDATE room_members SET role = 'admin' WHERE room_id = $1 AND user_id = $2`,
				rid, aid); err != nil {
				return err
			}
		}
		var id int64
		return tx.QueryRow(ctx, `
			UPDATE room_members m SET role = $3 FROM users u
			 WHERE m.room_id = $1 AND m.user_id = $2 AND u.id = m.user_id
			RETURNING u.id, u.username, u.display_name, m.role`, rid, tid, role).
			Scan(&id, &m.User.Username, &m.User.DisplayName, &m.Role)
	})
	m.User.ID = targetID
	return m, wrap("set role", err)
}

// RemoveMember removes targetID from roomID on behalf of actorID (SPEC
// §14: the owner removes anyone, an admin removes members). Removing a
// non-member is chat.ErrNotFound.
func (s *Store) RemoveMember(ctx context.Context, actorID, roomID, targetID string) error {
	ids, err := parseIDs(actorID, roomID, targetID)
	if err != nil {
		return err
	}
	aid, rid, tid := ids[0], ids[1], ids[2]
	if aid == tid {
		return chat.Errorf(chat.CodeBadRequest, "leave with DELETE /api/v1/rooms/{id}/members/me")
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, tid)
		if err != nil {
			return err
		}
		if err := r.moderate(); err != nil {
			return err
		}
		if r.target == "" {
			return chat.Errorf(chat.CodeNotFound, "that user is not a member of this room")
		}
		_, err = tx.Exec(ctx, `DELETE FROM room_members WHERE room_id = $1 AND user_id = $2`, rid, tid)
		return err
	})
	return wrap("remove member", err)
}

// Ban removes targetID from roomID, if a member, and bars them from it on
// behalf of actorID (the rules of RemoveMember). It reports whether they
// were a member. Banning twice is not an error.
func (s *Store) Ban(ctx context.Context, actorID, roomID, targetID string) (wasMember bool, err error) {
	ids, err := parseIDs(actorID, roomID, targetID)
	if err != nil {
		return false, err
	}
	aid, rid, tid := ids[0], ids[1], ids[2]
	if aid == tid {
		return false, chat.Errorf(chat.CodeBadRequest, "you cannot ban yourself")
	}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, tid)
		if err != nil {
			return err
		}
		if err := r.moderate(); err != nil {
			return err
		}
		wasMember = r.target != ""
		_, err = tx.Exec(ctx, `
			WITH removed AS (DELETE FROM room_members WHERE room_id = $1 AND user_id = $2)
			INSERT INTO room_bans (room_id, user_id, banned_by) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			rid, tid, aid)
		if isCode(err, "23503") { // foreign key: no such user
			return chat.Errorf(chat.CodeNotFound, "no such user")
		}
		return err
	})
	return wasMember, wrap("ban", err)
}

// Unban lifts targetID's ban from roomID on behalf of actorID, an owner or
// admin. A user who is not banned is chat.ErrNotFound.
func (s *Store) Unban(ctx context.Context, actorID, roomID, targetID string) error {
	ids, err := parseIDs(actorID, roomID, targetID)
	if err != nil {
		return err
	}
	aid, rid, tid := ids[0], ids[1], ids[2]
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, tid)
		if err != nil {
			return err
		}
		if r.actor != chat.RoleOwner && r.actor != chat.RoleAdmin {
			return errNotModerator
		}
		tag, err := tx.Exec(ctx, `DELETE FROM room_bans WHERE room_id = $1 AND user_id = $2`, rid, tid)
		if err == nil && tag.RowsAffected() == 0 {
			return chat.Errorf(chat.CodeNotFound, "that user is not banned from this room")
		}
		return err
	})
	return wrap("unban", err)
}

// Bans lists the users banned from roomID, newest first, for its owner and
// admins.
func (s *Store) Bans(ctx context.Context, userID, roomID string) ([]chat.Ban, error) {
	ids, err := parseIDs(userID, roomID)
	if err != nil {
		return nil, err
	}
	if err := checkMember(ctx, s.db, ids[0], ids[1]); err != nil {
		return nil, wrap("bans", err)
	}
	var role string
	if err := s.db.QueryRow(ctx, `SELECT role FROM room_members WHERE room_id = $1 AND user_id = $2`,
		ids[1], ids[0]).Scan(&role); err != nil {
		return nil, wrap("bans", err)
	}
	if role != chat.RoleOwner && role != chat.RoleAdmin {
		return nil, errNotModerator
	}
	rows, err := s.db.Query(ctx, `
		SELECT u.id, u.username, u.display_name, by.id, by.username, by.display_name, b.created_at
		FROM room_bans b JOIN users u ON u.id = b.user_id LEFT JOIN users by ON by.id = b.banned_by
		WHERE b.room_id = $1 ORDER BY b.created_at DESC, u.id`, ids[1])
	if err != nil {
		return nil, wrap("bans", err)
	}
	bans, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Ban, error) {
		var b chat.Ban
		var id int64
		var byID *int64
		var byName, byDisplay *string
		err := row.Scan(&id, &b.User.Username, &b.User.DisplayName, &byID, &byName, &byDisplay, &b.CreatedAt)
		b.User.ID = formatID(id)
		if byID != nil {
			b.By = &chat.User{ID: formatID(*byID), Username: *byName, DisplayName: *byDisplay}
		}
		b.CreatedAt = b.CreatedAt.UTC()
		return b, err
	})
	return bans, wrap("bans", err)
}

// UpdateRoom renames roomID and/or sets its topic on behalf of actorID, its
// owner or an admin, and returns the room as the actor sees it. A name
// taken in any letter case is a conflict.
func (s *Store) UpdateRoom(ctx context.Context, actorID, roomID string, u chat.RoomUpdate) (chat.Room, error) {
	ids, err := parseIDs(actorID, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	aid, rid := ids[0], ids[1]
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, aid)
		if err != nil {
			return err
		}
		if r.actor != chat.RoleOwner && r.actor != chat.RoleAdmin {
			return errNotModerator
		}
		_, err = tx.Exec(ctx, `UPDATE rooms SET name = COALESCE($2, name), topic = COALESCE($3, topic) WHERE id = $1`,
			rid, u.Name, u.Topic)
		return err
	})
	if isUniqueViolation(err, "rooms_name_key") {
		return chat.Room{}, chat.Errorf(chat.CodeConflict, "room name %q is taken", *u.Name)
	}
	if err != nil {
		return chat.Room{}, wrap("update room", err)
	}
	return s.memberRoom(ctx, aid, rid)
}

// Archive makes roomID read-only on behalf of actorID, its owner, and
// returns the room. Archiving twice is not an error.
func (s *Store) Archive(ctx context.Context, actorID, roomID string) (chat.Room, error) {
	ids, err := parseIDs(actorID, roomID)
	if err != nil {
		return chat.Room{}, err
	}
	aid, rid := ids[0], ids[1]
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		r, err := lockRoles(ctx, tx, rid, aid, aid)
		if err != nil {
			return err
		}
		if r.actor != chat.RoleOwner {
			return errNotOwner
		}
		_, err = tx.Exec(ctx, `UPDATE rooms SET archived_at = COALESCE(archived_at, now()) WHERE id = $1`, rid)
		return err
	})
	if err != nil {
		return chat.Room{}, wrap("archive", err)
	}
	return s.memberRoom(ctx, aid, rid)
}

// CreateDirect returns the direct room of userID and the user named
// username, creating it when there is none (created true), and makes both
// members again if either had left. The memberships it made are returned
// for the hub.
func (s *Store) CreateDirect(ctx context.Context, userID, username string) (chat.Room, bool, []chat.Membership, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Room{}, false, nil, err
	}
	peer, err := s.UserByUsername(ctx, username)
	if errors.Is(err, chat.ErrNotFound) {
		return chat.Room{}, false, nil, chat.Errorf(chat.CodeNotFound, "no user named %q", username)
	}
	if err != nil {
		return chat.Room{}, false, nil, err
	}
	pid, _ := parseID(peer.ID)
	if pid == uid {
		return chat.Room{}, false, nil, chat.Errorf(chat.CodeBadRequest, "a direct room is with another user")
	}
	low, high := min(uid, pid), max(uid, pid)
	var rid int64
	var created bool
	// A concurrent create of the same pair loses on rooms_direct_key and
	// finds the winner's room.
	for range 2 {
		err = s.db.QueryRow(ctx, `
			WITH ins AS (
				INSERT INTO rooms (name, visibility, created_by, direct_low, direct_high)
				VALUES (NULL, 'direct', $1, $2, $3)
				ON CONFLICT (direct_low, direct_high) WHERE visibility = 'direct' DO NOTHING
				RETURNING id
			)
			SELECT id, true FROM ins
			UNION ALL
			SELECT id, false FROM rooms WHERE visibility = 'direct' AND direct_low = $2 AND direct_high = $3`,
			uid, low, high).Scan(&rid, &created)
		if !errors.Is(err, pgx.ErrNoRows) {
			break
		}
	}
	if err != nil {
		return chat.Room{}, false, nil, wrap("create direct", err)
	}
	var made []chat.Membership
	for _, id := range []int64{uid, pid} {
		m, err := s.insertMember(ctx, id, rid)
		if err != nil {
			return chat.Room{}, false, nil, wrap("create direct", err)
		}
		if m.New {
			made = append(made, m)
		}
	}
	r, err := s.memberRoom(ctx, uid, rid)
	if err != nil {
		return chat.Room{}, false, nil, err
	}
	r.Peer = &peer
	return r, created, made, nil
}
