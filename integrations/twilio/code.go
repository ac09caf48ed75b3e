package twilio

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
)

// CodeKind is the job that makes and sends one phone verification code
// (SPEC §8). It has few attempts: a code that did not go out within half a
// minute or so is of little use, and its owner asks for another.
var CodeKind = jobs.Kind{Type: "sms:code", Queue: "sms", MaxAttempts: 5, Timeout: 30 * time.Second}

// CodePayload is the payload of a CodeKind job. It names the code without
// holding it: the job makes the code, so that it is never at rest in Redis
// (or in the dead-letter set).
type CodePayload struct {
	UserID string `json:"user_id"`
	CodeID string `json:"code_id"`
}

// CodeJob returns what storage.WithPhoneCodes makes the job of each code
// asked for with: a CodeKind job of q keyed "sms-code:<code id>", so that a
// repeated enqueue adds nothing.
func CodeJob(q *jobs.Queue) func(userID, codeID string) (chat.Job, error) {
	return func(userID, codeID string) (chat.Job, error) {
		payload, _ := json.Marshal(CodePayload{UserID: userID, CodeID: codeID}) // strings always encode
		return q.Job(CodeKind.Type, "sms-code:"+codeID, payload, time.Time{})
	}
}

// CodeStore is what the code job reads and writes: it claims the code,
// sends it with nothing locked, and settles the claim.
type CodeStore interface {
	ClaimPhoneCode(ctx context.Context, userID, codeID string, hash []byte, lease time.Duration) (chat.PhoneCode, error)
	MarkPhoneCodeSent(ctx context.Context, c chat.PhoneCode) error
	ReleasePhoneCode(ctx context.Context, c chat.PhoneCode) error
}

// CodeSMS is the text of the SMS that carries a verification code.
func CodeSMS(code string) string { return "Your Switchboard code is " + code }

// HandleCode returns the handler of CodeKind: it makes a fresh code
// (auth.NewPhoneCode), claims it with its hash as hash makes it
// (auth.Tokens.HashPhoneCode), sends it through breaker unless another
// account verified the number (then nothing goes out: see chat.PhoneCode),
// and marks it sent. A failed send releases the code; the retry makes
// another. As for SMS (see HandleSMS), a run that dies between Twilio's
// acceptance and the mark leaves a claim that lapses after
// integrations.ClaimLease, and the next run sends a new code, which
// replaces the first; a run that dies before Twilio accepted loses nothing.
// A second run, or two at once, send one code; a run that meets another
// one's claim comes back after integrations.HeldRetry.
func HandleCode(store CodeStore, sender *Sender, breaker *jobs.Breaker, hash func(userID, code string) []byte) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p CodePayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("code payload: %w", err))
		}
		code := auth.NewPhoneCode()
		c, err := store.ClaimPhoneCode(ctx, p.UserID, p.CodeID, hash(p.UserID, code), integrations.ClaimLease)
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		if err != nil {
			return err
		}
		if !c.HeldUntil.IsZero() {
			return jobs.Wait(integrations.ErrHeld, min(integrations.HeldRetry, c.HeldUntil.Sub(c.Now)))
		}
		if !c.Claimed {
			return nil
		}
		if !c.Taken {
			err = breaker.Do(func() error { return sender.Send(c.Phone, CodeSMS(code)) })
		}
		settle, cancel := integrations.SettleContext(ctx)
		defer cancel()
		if err != nil {
			return errors.Join(err, store.ReleasePhoneCode(settle, c))
		}
		return store.MarkPhoneCodeSent(settle, c)
	}
}
