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
	"github.com/switchboard-chat/switchboard/storage"
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

// EnqueueCode returns what storage.WithPhoneCodes calls for each code asked
// for: it queues a CodeKind job keyed "sms-code:<code id>", so that a
// repeated enqueue adds nothing.
func EnqueueCode(q integrations.Enqueuer) func(ctx context.Context, userID, codeID string) error {
	return func(ctx context.Context, userID, codeID string) error {
		payload, _ := json.Marshal(CodePayload{UserID: userID, CodeID: codeID}) // strings always encode
		return q.Enqueue(ctx, CodeKind.Type, "sms-code:"+codeID, payload)
	}
}

// CodeStore is what the code job reads and writes.
type CodeStore interface {
	SendPhoneCode(ctx context.Context, userID, codeID string, send func(storage.PhoneCode) ([]byte, error)) error
}

// CodeSMS is the text of the SMS that carries a verification code.
func CodeSMS(code string) string { return "Your Switchboard code is " + code }

// HandleCode returns the handler of CodeKind: it makes a fresh code
// (auth.NewPhoneCode), sends it through breaker unless another account
// verified the number (then nothing goes out: see storage.PhoneCode), and
// has it stored as hash makes it (auth.Tokens.HashPhoneCode). A failed send
// stores nothing; the retry makes another code.
func HandleCode(store CodeStore, sender *Sender, breaker *jobs.Breaker, hash func(userID, code string) []byte) jobs.Handler {
	return func(ctx context.Context, payload []byte) error {
		var p CodePayload
		if err := json.Unmarshal(payload, &p); err != nil {
			return jobs.Permanent(fmt.Errorf("code payload: %w", err))
		}
		err := store.SendPhoneCode(ctx, p.UserID, p.CodeID, func(c storage.PhoneCode) ([]byte, error) {
			code := auth.NewPhoneCode()
			if !c.Taken {
				if err := breaker.Do(func() error { return sender.Send(c.Phone, CodeSMS(code)) }); err != nil {
					return nil, err
				}
			}
			return hash(c.UserID, code), nil
		})
		if errors.Is(err, chat.ErrNotFound) {
			return jobs.Permanent(err)
		}
		return err
	}
}
