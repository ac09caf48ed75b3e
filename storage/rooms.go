package storage

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// CreateRoom stores a new room with creatorID as its first member and
// owner. A name
// taken in any letter case is a conflict.
func (s *Store) CreateRoom(ctx context.Context, creatorID, name, visibility string) (chat.Room, error) {
	uid, err := parseID(creatorID)
	if err != nil {
		return chat.Room{}, err
	}
	var r chat.Room
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx,
			`INSERT INTO rooms (name, visibility, created_by) VALUES ($1, $2, $3) RETURNING id, name, visibility`,
			name, visibility, uid).Scan(&id, &r.Name, &r.Visibility); err != nil {
			return err
		}
		r.ID = formatID(id)
		_, err := tx.Exec(ctx, `INSERT INTO room_members (room_id, user_id, role) VALUES ($1, $2, 'owner')`, id, uid)
		return err
	})
	if isUniqueViolation(err, "rooms_name_key") {
		return chat.Room{}, chat.Errorf(chat.CodeConflict, "room name %q is taken", name)
	}
	return r, wrap("create room", err)
}

const roomColumns = `r.id, COALESCE(r.name, ''), r.visibility, r.last_seq, r.topic, r.archived_at IS NOT NULL`

// memberColumns follow roomColumns for a member's view of a room (joined
// as m): the read cursor, the updates after it (seqs that are no unread
// message) and the unread messages that mention the member.
const memberColumns = `m.read_seq,
	(SELECT count(*) FROM message_events e WHERE e.room_id = r.id AND e.seq > m.read_seq),
	(SELECT count(*) FROM mentions x WHERE x.user_id = m.user_id AND x.room_id = r.id AND x.seq > m.read_seq)`

// memberRoomTargets are the targets of roomColumns and memberColumns;
// finish completes r once they are read.
func memberRoomTargets(r *chat.Room, id, updates *int64) (targets []any, finish func()) {
	return []any{id, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived, &r.LastReadSeq, updates, &r.Mentions}, func() {
		r.ID = formatID(*id)
		r.Unread = max(r.LastSeq-r.LastReadSeq-*updates, 0)
	}
}

// RoomsOf lists the rooms userID belongs to with their read cursors and
// unread counts, by name (a direct room by its peer's username); direct
// rooms carry their peer.
func (s *Store) RoomsOf(ctx context.Context, userID string) ([]chat.Room, error) {
	uid, err := parseID(userID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT `+roomColumns+`, `+memberColumns+`, p.id, p.username, p.display_name
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		LEFT JOIN users p ON r.visibility = 'direct'
		     AND p.id = CASE WHEN r.direct_low = $1 THEN r.direct_high ELSE r.direct_low END
		WHERE m.user_id = $1 ORDER BY lower(COALESCE(r.name, p.username)), r.id`, uid)
	if err != nil {
		return nil, wrap("rooms of", err)
	}
	rooms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Room, error) {
		var r chat.Room
		var id, updates int64
		var peerID *int64
		var peerName, peerDisplay *string
		targets, finish := memberRoomTargets(&r, &id, &updates)
		err := row.Scan(append(targets, &peerID, &peerName, &peerDisplay)...)
		finish()
		if peerID != nil {
			r.Peer = &chat.User{ID: formatID(*peerID), Username: *peerName, DisplayName: *peerDisplay}
		}
		return r, err
	})
	return rooms, wrap("rooms of", err)
}

// PublicRooms lists every public room by name.
func (s *Store) PublicRooms(ctx context.Context) ([]chat.Room, error) {
	rows, err := s.db.Query(ctx, `SELECT `+roomColumns+` FROM rooms r WHERE r.visibility = 'public' ORDER BY lower(r.name)`)
	if err != nil {
		return nil, wrap("public rooms", err)
	}
	rooms, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Room, error) {
		var r chat.Room
		var id int64
		err := row.Scan(&id, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived)
		r.ID = formatID(id)
		return r, err
	})
	return rooms, wrap("public rooms", err)
}

// CheckMember returns nil when userID belongs to roomID. Otherwise it returns
// chat.ErrForbidden for a public room and chat.ErrNotFound for a private or
// missing one, so private rooms do not reveal that they exist.
func (s *Store) CheckMember(ctx context.Context, userID, roomID string) error {
	uid, err := parseID(userID)
	if err != nil {
		return err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return err
	}
	return wrap("check member", checkMember(ctx, s.db, uid, rid))
}

func checkMember(ctx context.Context, q queryRower, uid, rid int64) error {
	var visibility string
	var member bool
	err := q.QueryRow(ctx, `
		SELECT r.visibility, EXISTS (SELECT 1 FROM room_members WHERE room_id = r.id AND user_id = $2)
		FROM rooms r WHERE r.id = $1`, rid, uid).Scan(&visibility, &member)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return chat.ErrNotFound
	case err != nil:
		return err
	case member:
		return nil
	case visibility == chat.Public:
		return chat.ErrForbidden
	default:
		return chat.ErrNotFound
	}
}

// Join adds userID to the public room roomID. Joining a room one already
// belongs to is not an error (the membership is then not New). A private
// or direct room is chat.ErrNotFound unless the user is already a member; a
// user banned from the room is refused (SPEC §14).
func (s *Store) Join(ctx context.Context, userID, roomID string) (chat.Room, chat.Membership, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Room{}, chat.Membership{}, err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return chat.Room{}, chat.Membership{}, err
	}
	err = checkMember(ctx, s.db, uid, rid)
	if err != nil && !errors.Is(err, chat.ErrForbidden) {
		return chat.Room{}, chat.Membership{}, wrap("join", err)
	}
	// Only public rooms reach here unless the user is already a member.
	if err != nil {
		if err := checkNotBanned(ctx, s.db, uid, rid, "you are banned from this room"); err != nil {
			return chat.Room{}, chat.Membership{}, wrap("join", err)
		}
	}
	m, err := s.insertMember(ctx, uid, rid)
	if err != nil {
		return chat.Room{}, chat.Membership{}, wrap("join", err)
	}
	r, err := s.memberRoom(ctx, uid, rid)
	return r, m, err
}

// insertMember makes user uid a member of room rid from the room's current
// end: the messages before are history, read over HTTP, so they are neither
// delivered on the next connection nor counted unread (see the README's
// decisions). A member already there keeps their cursors.
func (s *Store) insertMember(ctx context.Context, uid, rid int64) (chat.Membership, error) {
	m := chat.Membership{UserID: formatID(uid), RoomID: formatID(rid)}
	err := s.db.QueryRow(ctx, `INSERT INTO room_members (room_id, user_id, delivered_seq, read_seq)
		SELECT id, $2, last_seq, last_seq FROM rooms WHERE id = $1 ON CONFLICT DO NOTHING
		RETURNING delivered_seq`, rid, uid).Scan(&m.FromSeq)
	if errors.Is(err, pgx.ErrNoRows) {
		return m, nil // a member already
	}
	m.New = err == nil
	return m, err
}

// AddMember adds the account named username to roomID on behalf of actorID,
// who must be a member. It returns the added user and the membership.
// Nobody is added to a direct room, nor a user banned from the room.
func (s *Store) AddMember(ctx context.Context, actorID, roomID, username string) (chat.User, chat.Membership, error) {
	aid, err := parseID(actorID)
	if err != nil {
		return chat.User{}, chat.Membership{}, err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return chat.User{}, chat.Membership{}, err
	}
	if err := checkMember(ctx, s.db, aid, rid); err != nil {
		return chat.User{}, chat.Membership{}, wrap("add member", err)
	}
	u, err := s.UserByUsername(ctx, username)
	if err != nil {
		if errors.Is(err, chat.ErrNotFound) {
			return chat.User{}, chat.Membership{}, chat.Errorf(chat.CodeNotFound, "no user named %q", username)
		}
		return chat.User{}, chat.Membership{}, err
	}
	uid, _ := parseID(u.ID)
	var direct bool
	if err := s.db.QueryRow(ctx, `SELECT visibility = 'direct' FROM rooms WHERE id = $1`, rid).Scan(&direct); err != nil {
		return chat.User{}, chat.Membership{}, wrap("add member", err)
	}
	if direct {
		return chat.User{}, chat.Membership{}, errDirectClosed
	}
	if err := checkNotBanned(ctx, s.db, uid, rid, "that user is banned from this room"); err != nil {
		return chat.User{}, chat.Membership{}, wrap("add member", err)
	}
	m, err := s.insertMember(ctx, uid, rid)
	if err != nil {
		return chat.User{}, chat.Membership{}, wrap("add member", err)
	}
	return u, m, nil
}

// Leave removes userID from roomID. An owner who leaves hands the room to
// the longest-standing admin, or else member.
func (s *Store) Leave(ctx context.Context, userID, roomID string) error {
	uid, err := parseID(userID)
	if err != nil {
		return err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return err
	}
	if err := checkMember(ctx, s.db, uid, rid); err != nil {
		return wrap("leave", err)
	}
	_, err = s.db.Exec(ctx, `
		WITH gone AS (
			DELETE FROM room_members WHERE room_id = $1 AND user_id = $2 RETURNING role
		), heir AS (
			SELECT m.user_id FROM room_members m
			 WHERE m.room_id = $1 AND m.user_id <> $2 AND (SELECT role FROM gone) = 'owner'
			 ORDER BY m.role = 'admin' DESC, m.joined_at, m.user_id LIMIT 1
		)
		UPDATE room_members m SET role = 'owner' FROM heir h WHERE m.room_id = $1 AND m.user_id = h.user_id`, rid, uid)
	return wrap("leave", err)
}

// MemberRoom returns roomID as userID sees it, with cursors; a non-member
// gets the error of CheckMember.
func (s *Store) MemberRoom(ctx context.Context, userID, roomID string) (chat.Room, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Room{}, err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return chat.Room{}, err
	}
	if err := checkMember(ctx, s.db, uid, rid); err != nil {
		return chat.Room{}, wrap("member room", err)
	}
	return s.memberRoom(ctx, uid, rid)
}

func (s *Store) memberRoom(ctx context.Context, uid, rid int64) (chat.Room, error) {
	var r chat.Room
	var id, updates int64
	targets, finish := memberRoomTargets(&r, &id, &updates)
	err := s.db.QueryRow(ctx, `
		SELECT `+roomColumns+`, `+memberColumns+`
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		WHERE m.room_id = $1 AND m.user_id = $2`, rid, uid).Scan(targets...)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.ErrNotFound
	}
	finish()
	return r, wrap("member room", err)
}

// RoomByName returns the room with the given name in any letter case.
func (s *Store) RoomByName(ctx context.Context, name string) (chat.Room, error) {
	var r chat.Room
	var id int64
	err := s.db.QueryRow(ctx, `SELECT `+roomColumns+` FROM rooms r WHERE lower(r.name) = lower($1)`, name).
		Scan(&id, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.ErrNotFound
	}
	r.ID = formatID(id)
	return r, wrap("room by name", err)
}

// LastSeq returns the seq of the newest message in roomID (0 when empty).
func (s *Store) LastSeq(ctx context.Context, roomID string) (int64, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return 0, err
	}
	var seq int64
	err = s.db.QueryRow(ctx, `SELECT last_seq FROM rooms WHERE id = $1`, rid).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, chat.ErrNotFound
	}
	return seq, wrap("last seq", err)
}

// Cursors returns the user's position in every room they belong to.
func (s *Store) Cursors(ctx context.Context, userID string) ([]chat.Cursor, error) {
	uid, err := parseID(userID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT r.id, r.last_seq, m.delivered_seq, m.read_seq
		FROM room_members m JOIN rooms r ON r.id = m.room_id
		WHERE m.user_id = $1`, uid)
	if err != nil {
		return nil, wrap("cursors", err)
	}
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.Cursor, error) {
		var c chat.Cursor
		var id int64
		err := row.Scan(&id, &c.LastSeq, &c.DeliveredSeq, &c.ReadSeq)
		c.RoomID = formatID(id)
		return c, err
	})
	return cs, wrap("cursors", err)
}

// MarkDelivered moves delivery cursors forward (never back): user → room
// → seq, for any number of users in one statement. It never waits for a
// row another transaction holds (a message being stored updates its
// sender's row; waiting for it while holding others could deadlock):
// those cursors come back in busy, to be written again later.
func (s *Store) MarkDelivered(ctx context.Context, seqs map[string]map[string]int64) (busy map[string]map[string]int64, err error) {
	var users, rooms, values []int64
	for user, byRoom := range seqs {
		uid, err := parseID(user)
		if err != nil {
			continue
		}
		for room, seq := range byRoom {
			rid, err := parseID(room)
			if err != nil {
				continue
			}
			users, rooms, values = append(users, uid), append(rooms, rid), append(values, seq)
		}
	}
	if len(users) == 0 {
		return nil, nil
	}
	// The last SELECT reads the rows as they were before this statement:
	// one behind and not updated was locked by someone else.
	rows, err := s.db.Query(ctx, `
		WITH v AS (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v (user_id, room_id, seq)
		), locked AS (
			SELECT m.room_id, m.user_id, v.seq FROM room_members m
			  JOIN v ON m.user_id = v.user_id AND m.room_id = v.room_id
			 WHERE m.delivered_seq < v.seq
			   FOR NO KEY UPDATE OF m SKIP LOCKED
		), updated AS (
			UPDATE room_members m SET delivered_seq = l.seq FROM locked l
			 WHERE m.room_id = l.room_id AND m.user_id = l.user_id
			RETURNING m.room_id, m.user_id
		)
		SELECT v.user_id, v.room_id, v.seq FROM v
		  JOIN room_members m ON m.user_id = v.user_id AND m.room_id = v.room_id AND m.delivered_seq < v.seq
		 WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.user_id = v.user_id AND u.room_id = v.room_id)`,
		users, rooms, values)
	if err != nil {
		return nil, wrap("mark delivered", err)
	}
	var uid, rid, seq int64
	_, err = pgx.ForEachRow(rows, []any{&uid, &rid, &seq}, func() error {
		if busy == nil {
			busy = make(map[string]map[string]int64)
		}
		user := formatID(uid)
		if busy[user] == nil {
			busy[user] = make(map[string]int64)
		}
		busy[user][formatID(rid)] = seq
		return nil
	})
	return busy, wrap("mark delivered", err)
}

// MarkRead moves the user's read cursor in roomID forward to seq (capped at
// the room's last seq) and returns the room with its new unread count.
func (s *Store) MarkRead(ctx context.Context, userID, roomID string, seq int64) (chat.Room, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Room{}, err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return chat.Room{}, err
	}
	if err := checkMember(ctx, s.db, uid, rid); err != nil {
		return chat.Room{}, wrap("mark read", err)
	}
	if _, err := s.db.Exec(ctx, `
		UPDATE room_members m SET read_seq = GREATEST(m.read_seq, LEAST($3, r.last_seq))
		FROM rooms r WHERE r.id = m.room_id AND m.room_id = $1 AND m.user_id = $2`, rid, uid, seq); err != nil {
		return chat.Room{}, wrap("mark read", err)
	}
	return s.memberRoom(ctx, uid, rid)
}

// RoomMembers lists the members of roomID by username.
func (s *Store) RoomMembers(ctx context.Context, roomID string) ([]chat.User, error) {
	rid, err := parseID(roomID)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.Query(ctx, `
		SELECT u.id, u.username, u.display_name
		FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = $1 ORDER BY lower(u.username)`, rid)
	if err != nil {
		return nil, wrap("room members", err)
	}
	users, err := pgx.CollectRows(rows, scanUser)
	return users, wrap("room members", err)
}
