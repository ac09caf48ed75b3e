package storage

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file holds the account's profile and the verification of its phone
// number (SPEC §3, §8). A code goes through three steps: UpdateProfile asks
// for it (a phone_codes row and a job, in one transaction), the job makes
// it, claims it (ClaimPhoneCode), sends it and settles the claim
// (MarkPhoneCodeSent), and the owner enters it (VerifyPhone). The
// code itself is made in the job and stored only as a keyed hash, so it is
// never at rest in Postgres or in the Redis queue.

// WithPhoneCodes turns on verification codes (SMS is configured). For
// each code it asks for, UpdateProfile makes the code's job with job,
// records it in the job journal and hands it to push (the queue), inside its
// transaction: the job's record exists exactly when the change commits, and
// a failed push fails the change (the job waits for that commit: see
// ClaimPhoneCode). Without it a new number is stored unverified and no code
// is asked for.
func WithPhoneCodes(job func(userID, codeID string) (chat.Job, error), push func(ctx context.Context, j chat.Job) error) Option {
	return func(s *Store) { s.phoneCodes = &phoneCodes{job: job, push: push} }
}

// phoneCodes is how UpdateProfile queues the job of a code.
type phoneCodes struct {
	job  func(userID, codeID string) (chat.Job, error)
	push func(ctx context.Context, j chat.Job) error
}

// UpdateProfile applies u to the account in one transaction. A phone number
// other than the account's verified one is stored unverified and, with
// WithPhoneCodes, a code is asked for: at most chat.PhoneCodesPerWindow per
// chat.PhoneCodeWindow, above which nothing changes and the error is
// rate_limited with its RetryAfter. The account's own verified number again
// changes nothing and asks for nothing; "" clears the number and its
// verification. Several accounts may hold one unverified number. A Slack
// user id of another account is a conflict.
func (s *Store) UpdateProfile(ctx context.Context, userID string, u chat.ProfileUpdate) (chat.Profile, error) {
	id, err := parseID(userID)
	if err != nil {
		return chat.Profile{}, err
	}
	var p chat.Profile
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		phone, verified, err := lockPhone(ctx, tx, id)
		if err != nil {
			return err
		}
		newPhone := u.Phone
		if newPhone != nil && verified && *newPhone == *phone {
			newPhone = nil
		}
		var codeID int64
		if newPhone != nil && *newPhone != "" && s.phoneCodes != nil {
			if codeID, err = requestPhoneCode(ctx, tx, id, *newPhone); err != nil {
				return err
			}
		}
		p, err = scanProfile(tx.QueryRow(ctx, `
			UPDATE users SET
				display_name   = COALESCE($2, display_name),
				phone          = CASE WHEN $3::text IS NULL THEN phone ELSE NULLIF($3, '') END,
				phone_verified = $3::text IS NULL AND phone_verified,
				sms_notify     = COALESCE($4, sms_notify),
				slack_user_id  = CASE WHEN $5::text IS NULL THEN slack_user_id ELSE NULLIF($5, '') END
			WHERE id = $1
			RETURNING `+profileColumns, id, u.DisplayName, newPhone, u.SMSNotify, u.SlackUserID))
		if err != nil || codeID == 0 {
			return err
		}
		j, err := s.phoneCodes.job(userID, formatID(codeID))
		if err != nil {
			return err
		}
		if err := recordJobs(ctx, tx, []chat.Job{j}); err != nil {
			return err
		}
		return s.phoneCodes.push(ctx, j)
	})
	if isUniqueViolation(err, "users_slack_user_id_key") {
		return chat.Profile{}, chat.Errorf(chat.CodeConflict, "that Slack user id belongs to another account")
	}
	if err != nil {
		return chat.Profile{}, wrap("update profile", err)
	}
	return p, nil
}

// lockPhone locks the account's row (FOR NO KEY UPDATE, which foreign key
// checks of new messages and memberships do not wait for) and returns its
// phone number and whether it is verified.
func lockPhone(ctx context.Context, tx pgx.Tx, uid int64) (phone *string, verified bool, err error) {
	err = tx.QueryRow(ctx, `SELECT phone, phone_verified FROM users WHERE id = $1 FOR NO KEY UPDATE`, uid).Scan(&phone, &verified)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, chat.ErrNotFound
	}
	return phone, verified, err
}

// requestPhoneCode records that a code for phone is asked for and returns
// its id, unless the account already asked for chat.PhoneCodesPerWindow
// within the window. The caller holds the account's row, so concurrent
// requests are counted one after the other.
func requestPhoneCode(ctx context.Context, tx pgx.Tx, uid int64, phone string) (int64, error) {
	// Older rows count for nothing any more.
	if _, err := tx.Exec(ctx, `DELETE FROM phone_codes WHERE user_id = $1 AND created_at <= now() - $2::interval`,
		uid, chat.PhoneCodeWindow); err != nil {
		return 0, err
	}
	var n int
	var oldest *time.Time
	var now time.Time
	err := tx.QueryRow(ctx, `SELECT count(*), min(created_at), now() FROM phone_codes WHERE user_id = $1`, uid).
		Scan(&n, &oldest, &now)
	if err != nil {
		return 0, err
	}
	if n >= chat.PhoneCodesPerWindow {
		return 0, &chat.Error{
			Code:       chat.CodeRateLimited,
			Message:    fmt.Sprintf("at most %d codes per hour; try again later", chat.PhoneCodesPerWindow),
			RetryAfter: oldest.Add(chat.PhoneCodeWindow).Sub(now),
		}
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO phone_codes (user_id, phone) VALUES ($1, $2) RETURNING id`, uid, phone).Scan(&id)
	return id, err
}

// ClaimPhoneCode takes, in one short transaction, the code codeID of userID
// that UpdateProfile asked for, if it is still to be made: it stores hash,
// the keyed hash of the code the caller made, with its expiry,
// chat.PhoneCodeLifetime from now, and a claim that lapses after lease. The
// account's row is locked first, which waits for the transaction that asked
// for the code to commit, and only until this one commits: no lock is held
// while the caller sends the code. It settles the claim with
// MarkPhoneCodeSent or ReleasePhoneCode. While the claim holds, other runs
// get HeldUntil; once it lapses (its run died), the next run claims the
// code with a hash of its own, which replaces the first. A code that is no
// longer the account's current one (a newer one was asked for, the number
// was cleared or verified) or that was made already is not claimed.
func (s *Store) ClaimPhoneCode(ctx context.Context, userID, codeID string, hash []byte, lease time.Duration) (chat.PhoneCode, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.PhoneCode{}, err
	}
	cid, err := parseID(codeID)
	if err != nil {
		return chat.PhoneCode{}, err
	}
	c := chat.PhoneCode{UserID: userID, CodeID: codeID, Hash: hash}
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		phone, verified, err := lockPhone(ctx, tx, uid)
		if errors.Is(err, chat.ErrNotFound) {
			return nil // the account is gone
		}
		if err != nil {
			return err
		}
		// A statement after the lock: it sees what the transaction that
		// asked for the code committed.
		var made bool
		var held *time.Time
		err = tx.QueryRow(ctx, `
			SELECT c.phone, EXISTS (SELECT 1 FROM users u WHERE u.phone = c.phone AND u.phone_verified AND u.id <> c.user_id),
			       c.code_hash IS NOT NULL, c.claimed_until, now()
			FROM phone_codes c
			WHERE c.id = $1 AND c.user_id = $2
			  AND c.id = (SELECT max(id) FROM phone_codes WHERE user_id = $2)`, cid, uid).
			Scan(&c.Phone, &c.Taken, &made, &held, &c.Now)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (verified || phone == nil || *phone != c.Phone)) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case made && held == nil:
			return nil // made and settled
		case made && held.After(c.Now):
			c.HeldUntil = *held
			return nil
		}
		_, err = tx.Exec(ctx, `
			UPDATE phone_codes SET code_hash = $2, expires_at = now() + $3::interval, claimed_until = now() + $4::interval
			WHERE id = $1`, cid, hash, chat.PhoneCodeLifetime, lease)
		c.Claimed = err == nil
		return err
	})
	if err != nil {
		return chat.PhoneCode{}, wrap("claim phone code", err)
	}
	return c, nil
}

// MarkPhoneCodeSent settles claim c: the code went out (or, Taken, was not
// to), and it expires chat.PhoneCodeLifetime from now. A claim that lapsed
// and was taken over is left alone: the code of the later run is the one
// that counts.
func (s *Store) MarkPhoneCodeSent(ctx context.Context, c chat.PhoneCode) error {
	cid, err := parseID(c.CodeID)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `
		UPDATE phone_codes SET claimed_until = NULL, expires_at = now() + $3::interval
		WHERE id = $1 AND code_hash = $2 AND claimed_until IS NOT NULL`, cid, c.Hash, chat.PhoneCodeLifetime)
	return wrap("mark phone code sent", err)
}

// ReleasePhoneCode gives claim c up (the code could not be sent): the code
// is forgotten, and the next run makes and claims another.
func (s *Store) ReleasePhoneCode(ctx context.Context, c chat.PhoneCode) error {
	cid, err := parseID(c.CodeID)
	if err != nil {
		return err
	}
	_, err = s.db.Exec(ctx, `
		UPDATE phone_codes SET code_hash = NULL, expires_at = NULL, claimed_until = NULL
		WHERE id = $1 AND code_hash = $2 AND claimed_until IS NOT NULL`, cid, c.Hash)
	return wrap("release phone code", err)
}

// VerifyPhone's refusals, all bad_request.
var (
	// ErrWrongCode: the code does not match; it counts towards
	// chat.PhoneCodeTries. It is also the answer to every code for a number
	// that another account verified, so that nothing tells whose it is.
	ErrWrongCode = chat.Errorf(chat.CodeBadRequest, "wrong code")
	// ErrCodeVoid: chat.PhoneCodeTries wrong codes were entered.
	ErrCodeVoid = chat.Errorf(chat.CodeBadRequest,
		"this code is void after %d wrong tries: set your phone number again to get a new one", chat.PhoneCodeTries)
	// ErrCodeExpired: the code was sent more than chat.PhoneCodeLifetime
	// ago.
	ErrCodeExpired = chat.Errorf(chat.CodeBadRequest, "this code has expired: set your phone number again to get a new one")
	// ErrNoCode: the account has no unverified number, or no code for it.
	ErrNoCode = chat.Errorf(chat.CodeBadRequest, "no code is waiting: set your phone number to get one")
)

// VerifyPhone checks a code, given as its keyed hash, against the current
// code of the account's unverified number. A match verifies the number and
// returns the profile; otherwise the error is one of ErrWrongCode (counted),
// ErrCodeVoid, ErrCodeExpired or ErrNoCode.
func (s *Store) VerifyPhone(ctx context.Context, userID string, codeHash []byte) (chat.Profile, error) {
	uid, err := parseID(userID)
	if err != nil {
		return chat.Profile{}, err
	}
	var p chat.Profile
	var refusal error // committed with the transaction: a wrong code is counted
	err = pgx.BeginFunc(ctx, s.db, func(tx pgx.Tx) error {
		phone, verified, err := lockPhone(ctx, tx, uid)
		if err != nil {
			return err
		}
		if phone == nil || verified {
			refusal = ErrNoCode
			return nil
		}
		var cid int64
		var codePhone string
		var hash []byte
		var wrong int
		var expires *time.Time
		var now time.Time
		var taken bool
		err = tx.QueryRow(ctx, `
			SELECT c.id, c.phone, c.code_hash, c.wrong, c.expires_at, now(),
			       EXISTS (SELECT 1 FROM users u WHERE u.phone = c.phone AND u.phone_verified AND u.id <> c.user_id)
			FROM phone_codes c WHERE c.user_id = $1 ORDER BY c.id DESC LIMIT 1`, uid).
			Scan(&cid, &codePhone, &hash, &wrong, &expires, &now, &taken)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && codePhone != *phone) {
			refusal = ErrNoCode
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case wrong >= chat.PhoneCodeTries:
			refusal = ErrCodeVoid
			return nil
		case expires != nil && !now.Before(*expires):
			refusal = ErrCodeExpired
			return nil
		case hash == nil || subtle.ConstantTimeCompare(hash, codeHash) != 1 || taken:
			refusal = ErrWrongCode
			_, err = tx.Exec(ctx, `UPDATE phone_codes SET wrong = wrong + 1 WHERE id = $1`, cid)
			return err
		}
		// A used code expires at once.
		if _, err := tx.Exec(ctx, `UPDATE phone_codes SET expires_at = now() WHERE id = $1`, cid); err != nil {
			return err
		}
		p, err = scanProfile(tx.QueryRow(ctx, `UPDATE users SET phone_verified = true WHERE id = $1 RETURNING `+profileColumns, uid))
		return err
	})
	if isUniqueViolation(err, "users_phone_key") {
		// Another account verified the number a moment earlier.
		return chat.Profile{}, ErrWrongCode
	}
	if err != nil {
		return chat.Profile{}, wrap("verify phone", err)
	}
	if refusal != nil {
		return chat.Profile{}, refusal
	}
	return p, nil
}
