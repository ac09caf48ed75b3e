package storage

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// Outbox says which integrations are on. A stored message that has work for
// one of them gets an outbox row in its own transaction (SPEC §10): a Slack
// post when its room is bridged and it did not come from Slack, an SMS check
// when some other member wants SMS notifications.
type Outbox struct {
	SMS   bool
	Slack bool
}

// WithOutbox turns on the outbox for the integrations o names.
func WithOutbox(o Outbox) Option { return func(s *Store) { s.outbox = o } }

// RelayOutbox locks up to limit outbox rows that no other relay holds,
// passes their items (messages, and edits or deletes to mirror) to enqueue
// and deletes the rows when enqueue succeeds. If enqueue fails, or the process dies before the
// commit, the rows stay for the next pass, so enqueue must tolerate seeing
// a message twice. It returns how many rows it relayed.
func (s *Store) RelayOutbox(ctx context.Context, limit int, enqueue func(items []chat.OutboxItem) error) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, message_id, COALESCE(event_seq, 0) FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		var ids []int64
		var items []chat.OutboxItem
		var id, mid, seq int64
		_, err = pgx.ForEachRow(rows, []any{&id, &mid, &seq}, func() error {
			ids = append(ids, id)
			items = append(items, chat.OutboxItem{MessageID: formatID(mid), EventSeq: seq})
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		if err := enqueue(items); err != nil {
			return err
		}
		n = len(ids)
		_, err = tx.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids)
		return err
	})
	if err != nil {
		return 0, wrap("relay outbox", err)
	}
	return n, nil
}

// Notice loads messageID with its room's Slack channel and the members who
// may get an SMS about it.
func (s *Store) Notice(ctx context.Context, messageID string) (chat.Notice, error) {
	var n chat.Notice
	var err error
	m, err := s.Message(ctx, messageID)
	if err != nil {
		return chat.Notice{}, err
	}
	n.Message = m.Message
	var channel *string
	err = s.db.QueryRow(ctx, `SELECT name, slack_channel_id FROM rooms WHERE id = $1`, n.Message.RoomID).Scan(&n.RoomName, &channel)
	if err != nil {
		return chat.Notice{}, wrap("notice room", err)
	}
	if channel != nil {
		n.SlackChannel = *channel
	}
	rows, err := s.db.Query(ctx, `
		SELECT u.id, u.username, u.display_name
		FROM room_members m JOIN users u ON u.id = m.user_id
		WHERE m.room_id = $1 AND m.user_id <> $2 AND u.sms_notify AND u.phone_verified`,
		n.Message.RoomID, n.Message.Sender.ID)
	if err != nil {
		return chat.Notice{}, wrap("notice members", err)
	}
	n.SMSMembers, err = pgx.CollectRows(rows, scanUser)
	return n, wrap("notice members", err)
}

func scanUser(row pgx.CollectableRow) (chat.User, error) {
	var u chat.User
	var id int64
	err := row.Scan(&id, &u.Username, &u.DisplayName)
	u.ID = formatID(id)
	return u, err
}

// AddPendingSMS queues messageID for an SMS to each user about its room. A
// repeat is ignored.
func (s *Store) AddPendingSMS(ctx context.Context, messageID string, userIDs []string) error {
	mid, err := parseID(messageID)
	if err != nil {
		return err
	}
	uids := make([]int64, 0, len(userIDs))
	for _, u := range userIDs {
		id, err := parseID(u)
		if err != nil {
			return err
		}
		uids = append(uids, id)
	}
	_, err = s.db.Exec(ctx, `
		INSERT INTO sms_pending (user_id, room_id, message_id)
		SELECT u, m.room_id, m.id FROM messages m, unnest($2::bigint[]) u WHERE m.id = $1
		ON CONFLICT DO NOTHING`, mid, uids)
	return wrap("add pending sms", err)
}

// ClaimPendingSMS takes, in one short transaction, the SMS work of userID
// about roomID: the messages pending for the pair, the user's verified
// number, the room's name and when the last SMS about the room went to the
// user. While the claim (Token) holds, other runs get nothing but HeldUntil;
// it lapses after lease, so the work of a run that died is taken over. The
// caller decides what to do with it and settles it with MarkSMSSent,
// DropPendingSMS or ReleaseSMSClaim; no lock is held meanwhile. Nothing
// pending: nothing is claimed.
func (s *Store) ClaimPendingSMS(ctx context.Context, userID, roomID string, lease time.Duration) (chat.SMSClaim, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.SMSClaim{}, err
	}
	rid, err := parseID(roomID)
	if err != nil {
		return chat.SMSClaim{}, err
	}
	c := chat.SMSClaim{UserID: userID, RoomID: roomID}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO sms_throttle (user_id, room_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, uid, rid); err != nil {
			return err
		}
		var last, held *time.Time
		err := tx.QueryRow(ctx, `SELECT last_sent_at, claimed_until, now() FROM sms_throttle WHERE user_id = $1 AND room_id = $2 FOR UPDATE`,
			uid, rid).Scan(&last, &held, &c.Now)
		if err != nil {
			return err
		}
		if held != nil && held.After(c.Now) {
			c.HeldUntil = *held
			return nil
		}
		if last != nil {
			c.LastSentAt = *last
		}
		var phone *string
		err = tx.QueryRow(ctx, `SELECT CASE WHEN u.phone_verified THEN u.phone END, COALESCE(r.name, '') FROM users u, rooms r WHERE u.id = $1 AND r.id = $2`,
			uid, rid).Scan(&phone, &c.RoomName)
		if err != nil {
			return err
		}
		if phone != nil {
			c.Phone = *phone
		}
		rows, err := tx.Query(ctx, `SELECT `+messageColumns+messageFrom+`
			JOIN sms_pending p ON p.message_id = m.id
			WHERE p.user_id = $1 AND p.room_id = $2 ORDER BY m.seq`, uid, rid)
		c.Messages, err = collectMessages(rows, err)
		if err != nil || len(c.Messages) == 0 {
			return err
		}
		return tx.QueryRow(ctx, `
			UPDATE sms_throttle SET claim = gen_random_uuid(), claimed_until = now() + $3::interval
			WHERE user_id = $1 AND room_id = $2 RETURNING claim::text`, uid, rid, lease).Scan(&c.Token)
	})
	if err != nil {
		return chat.SMSClaim{}, wrap("claim pending sms", err)
	}
	return c, nil
}

// MarkSMSSent records that the SMS of claim c went out: its messages are no
// longer pending, the last SMS about the room went to the user now, and the
// claim is settled. It records that even if the claim lapsed meanwhile, for
// the SMS went out all the same; messages that came after the claim stay
// pending.
func (s *Store) MarkSMSSent(ctx context.Context, c chat.SMSClaim) error {
	return wrap("mark sms sent", s.settleSMS(ctx, c, true))
}

// DropPendingSMS settles claim c without an SMS: its messages are no longer
// pending (their recipient has no verified number to send them to).
func (s *Store) DropPendingSMS(ctx context.Context, c chat.SMSClaim) error {
	return wrap("drop pending sms", s.settleSMS(ctx, c, false))
}

func (s *Store) settleSMS(ctx context.Context, c chat.SMSClaim, sent bool) error {
	uid, rid, err := parseClaim(c)
	if err != nil {
		return err
	}
	ids := make([]string, len(c.Messages))
	for i, m := range c.Messages {
		ids[i] = m.ID
	}
	// One statement: the rows go and the claim is settled together.
	_, err = s.db.Exec(ctx, `
		WITH settled AS (
			DELETE FROM sms_pending WHERE user_id = $1 AND room_id = $2 AND message_id = ANY($3::bigint[]))
		UPDATE sms_throttle SET
			last_sent_at  = CASE WHEN $5 THEN now() ELSE last_sent_at END,
			claim         = CASE WHEN claim = $4::uuid THEN NULL ELSE claim END,
			claimed_until = CASE WHEN claim = $4::uuid THEN NULL ELSE claimed_until END
		WHERE user_id = $1 AND room_id = $2`, uid, rid, ids, c.Token, sent)
	return err
}

// ReleaseSMSClaim gives claim c up unchanged (the SMS was not sent, or is
// not due yet): the next run claims the same messages. A claim that lapsed
// and was taken by another run is left to that run.
func (s *Store) ReleaseSMSClaim(ctx context.Context, c chat.SMSClaim) error {
	uid, rid, err := parseClaim(c)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `UPDATE sms_throttle SET claim = NULL, claimed_until = NULL WHERE user_id = $1 AND room_id = $2 AND claim = $3::uuid`,
		uid, rid, c.Token)
	return wrap("release sms claim", err)
}

// parseClaim returns the keys of the pair of a claim that was made.
func parseClaim(c chat.SMSClaim) (uid, rid int64, err error) {
	if c.Token == "" {
		return 0, 0, errors.New("storage: settling an SMS claim that was not made")
	}
	if uid, err = parseID(c.UserID); err != nil {
		return 0, 0, err
	}
	rid, err = parseID(c.RoomID)
	return uid, rid, err
}

// ClaimRun claims the side effect named key unless it was done: while the
// claim (Token) holds, other runs get HeldUntil; it lapses after lease, so
// the work of a run that died is taken over. The caller does the work with
// nothing locked and settles the claim with FinishRun or ReleaseRun. A key
// done already is not claimed.
func (s *Store) ClaimRun(ctx context.Context, key string, lease time.Duration) (chat.RunClaim, error) {
	c := chat.RunClaim{Key: key}
	err := pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			INSERT INTO job_runs AS r (key, done_at, claim, claimed_until) VALUES ($1, NULL, gen_random_uuid(), now() + $2::interval)
			ON CONFLICT (key) DO UPDATE SET claim = excluded.claim, claimed_until = excluded.claimed_until
				WHERE r.done_at IS NULL AND r.claimed_until <= now()
			RETURNING claim::text, now()`, key, lease).Scan(&c.Token, &c.Now)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Done, or claimed by a live run; ON CONFLICT locked the row.
		var held *time.Time
		err = tx.QueryRow(ctx, `SELECT claimed_until, now() FROM job_runs WHERE key = $1`, key).Scan(&held, &c.Now)
		if held != nil {
			c.HeldUntil = *held
		}
		return err
	})
	if err != nil {
		return chat.RunClaim{}, wrap("claim run", err)
	}
	return c, nil
}

// FinishRun records that the work of claim c was done, even if the claim
// lapsed meanwhile (the work was done all the same): no later run claims
// it.
func (s *Store) FinishRun(ctx context.Context, c chat.RunClaim) error {
	_, err := s.db.Exec(ctx, `
		INSERT INTO job_runs AS r (key, done_at) VALUES ($1, now())
		ON CONFLICT (key) DO UPDATE SET done_at = COALESCE(r.done_at, now()), claim = NULL, claimed_until = NULL`, c.Key)
	return wrap("finish run", err)
}

// ReleaseRun gives claim c up (the work failed): the next run claims it. A
// claim that lapsed and was taken by another run is left to that run.
func (s *Store) ReleaseRun(ctx context.Context, c chat.RunClaim) error {
	if c.Token == "" {
		return errors.New("storage: releasing a run that was not claimed")
	}
	_, err := s.db.Exec(ctx, `DELETE FROM job_runs WHERE key = $1 AND claim = $2::uuid`, c.Key, c.Token)
	return wrap("release run", err)
}

// ForgetRuns deletes the keys of runs done before cutoff, and the claims
// that lapsed before it (their work was dead-lettered or never retried).
func (s *Store) ForgetRuns(ctx context.Context, cutoff time.Time) error {
	_, err := s.db.Exec(ctx, `DELETE FROM job_runs WHERE done_at < $1 OR claimed_until < $1`, cutoff)
	return wrap("forget runs", err)
}

// BridgeSlack links the room named or numbered room to a Slack channel
// (empty channel: unlinks it) and returns the room.
func (s *Store) BridgeSlack(ctx context.Context, room, channel string) (chat.Room, error) {
	r, err := s.RoomByName(ctx, room)
	if errors.Is(err, chat.ErrNotFound) {
		if _, perr := parseID(room); perr == nil {
			r.ID, err = room, nil
		}
	}
	if err != nil {
		return chat.Room{}, err
	}
	rid, _ := parseID(r.ID)
	err = s.db.QueryRow(ctx, `UPDATE rooms r SET slack_channel_id = $2 WHERE r.id = $1 RETURNING `+roomColumns,
		rid, nullable(channel)).Scan(&rid, &r.Name, &r.Visibility, &r.LastSeq, &r.Topic, &r.Archived)
	if errors.Is(err, pgx.ErrNoRows) {
		return chat.Room{}, chat.ErrNotFound
	}
	if isUniqueViolation(err, "rooms_slack_channel_key") {
		return chat.Room{}, chat.Errorf(chat.CodeConflict, "channel %s is already bridged to another room", channel)
	}
	r.ID = formatID(rid)
	return r, wrap("bridge slack", err)
}
