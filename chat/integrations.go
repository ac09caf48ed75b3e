package chat

import "time"

// Notice is what the integrations need to know about one stored message.
type Notice struct {
	Message      Message
	RoomName     string
	SlackChannel string // empty: the room is not bridged
	SMSMembers   []User // other members with a verified phone and SMS notifications on
}

// SMSClaim is the SMS work of one (user, room) pair that a job took: the
// messages pending for the user about the room, what the throttle of SPEC §8
// needs to know, and the claim that keeps other runs of the pair away until
// it is settled (sent, dropped or released) or lapses. The policy (whether
// to send now) is the job's: the claim only reports.
type SMSClaim struct {
	UserID, RoomID string
	// Token names the claim; "" when nothing was claimed: nothing is
	// pending, or another run holds the pair until HeldUntil.
	Token string
	// HeldUntil is when the claim of another run that holds the pair
	// lapses; zero unless one does.
	HeldUntil time.Time
	// Phone is the user's verified number; "" when it was removed or is
	// no longer verified.
	Phone    string
	RoomName string
	Messages []Message // pending, oldest first
	// LastSentAt is when the last SMS about the room went to the user; zero:
	// never.
	LastSentAt time.Time
	// Now is the database's clock at the claim, the clock of LastSentAt and
	// HeldUntil.
	Now time.Time
}

// PhoneCode is a verification code (SPEC §8) that a job claimed to send.
type PhoneCode struct {
	UserID, CodeID string
	Phone          string // the number it is for
	// Taken reports that another account verified Phone. The code is then
	// made as any other but not sent: the number's owner gets no SMS from
	// strangers, and the account that asked sees what it would see had the
	// SMS been lost (its codes never match).
	Taken bool
	// Hash is the keyed hash of the code, stored with the claim; it names
	// the claim.
	Hash []byte
	// Claimed reports that this run holds the code: it is to send it (unless
	// Taken) and settle the claim. Unclaimed with a zero HeldUntil, there is
	// nothing to do: the code was made already, a newer one replaced it, its
	// number was cleared or verified, or the account is gone.
	Claimed bool
	// HeldUntil is when the claim of another run that holds the code
	// lapses; zero unless one does.
	HeldUntil time.Time
	// Now is the database's clock at the claim, the clock of HeldUntil.
	Now time.Time
}

// RunClaim is a claim on a side effect that is to be done once (a Slack
// post), under a key derived from its cause.
type RunClaim struct {
	Key string
	// Token names the claim; "" when nothing was claimed: the work is done,
	// or another run holds it until HeldUntil.
	Token string
	// HeldUntil is when the claim of another run that holds the work
	// lapses; zero unless one does.
	HeldUntil time.Time
	// Now is the database's clock at the claim, the clock of HeldUntil.
	Now time.Time
}

// Job is the durable record of one job of the queue (integrations/jobs),
// kept in Postgres from before the job is put in Redis until it has run:
// what it takes to put the job back when Redis lost it (SPEC §15).
type Job struct {
	// Key names the job, and is its task id in the queue: one job per key.
	Key     string
	Type    string // task type, e.g. "slack:post"
	Payload []byte
	// RunAt is when the job is to run (not before).
	RunAt time.Time
	// CheckAt is when a sweeper first makes sure the queue holds the job,
	// if it has not run by then.
	CheckAt time.Time
}

// OutboxItem is one row of the outbox: a stored message with work outside
// Postgres, or (EventSeq > 0) an edit or delete of one to mirror to Slack.
type OutboxItem struct {
	MessageID string
	EventSeq  int64
}
