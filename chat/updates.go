package chat

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Changes to a message (SPEC §13).
const (
	// MaxEmojiChars bounds an emoji's length, in characters.
	MaxEmojiChars = 32
	// MaxDistinctEmoji is how many different emoji one message may carry.
	MaxDistinctEmoji = 20
	// DefaultEventsPage and MaxEventsPage bound the pages of GET
	// /rooms/{id}/events.
	DefaultEventsPage = 100
	MaxEventsPage     = 500
)

// Actions a member may take on a message.
const (
	ActionEdit    = "edit"
	ActionDelete  = "delete"
	ActionReact   = "react"
	ActionUnreact = "unreact"
)

// Kinds of room events: a message, or an update to one.
const (
	KindMessage  = "message"
	KindEdit     = "edit"
	KindDelete   = "delete"
	KindReaction = "reaction"
)

// Update is a change a member asks for.
type Update struct {
	Action    string // one of the Action constants
	MessageID string
	UserID    string // who asks
	Body      string // ActionEdit: the new body
	Emoji     string // ActionReact, ActionUnreact
}

// Validate checks everything about u that does not need the database, and
// normalizes the body of an edit as a new message's (SPEC §5).
func (u *Update) Validate() error {
	switch u.Action {
	case ActionEdit:
		body, err := NormalizeBody(u.Body)
		if err != nil {
			return err
		}
		u.Body = body
	case ActionDelete:
	case ActionReact, ActionUnreact:
		return CheckEmoji(u.Emoji)
	default:
		return Errorf(CodeBadRequest, "unknown action %q", u.Action)
	}
	return nil
}

// CheckEmoji checks SPEC §13's rule for a reaction: any string of 1–32
// characters without whitespace ("👍", ":shipit:"). Control characters are
// refused too, as they show nothing.
func CheckEmoji(emoji string) error {
	if !utf8.ValidString(emoji) {
		return Errorf(CodeBadRequest, "emoji is not valid UTF-8")
	}
	n := utf8.RuneCountInString(emoji)
	if n == 0 || n > MaxEmojiChars {
		return Errorf(CodeBadRequest, "emoji must be 1-%d characters", MaxEmojiChars)
	}
	if strings.IndexFunc(emoji, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return Errorf(CodeBadRequest, "emoji may not contain whitespace")
	}
	return nil
}

// RoomEvent is one event of a room's seq order: a message (Kind
// KindMessage, Seq the message's) or an update to one, whose Message is
// the message's state after it (a replay may show a later state, which
// SPEC §13 allows).
type RoomEvent struct {
	Seq     int64
	Kind    string
	Message EncodedMessage
}

// MarshalJSON encodes a message event as {"kind":"message","seq","message"}
// and an update as its "update" frame (SPEC §13), the form of GET
// /rooms/{id}/events.
func (e RoomEvent) MarshalJSON() ([]byte, error) {
	if e.Kind == KindMessage {
		b := append([]byte(`{"kind":"message","seq":`), strconv.FormatInt(e.Seq, 10)...)
		b = append(append(b, `,"message":`...), e.Message.JSON...)
		return append(b, '}'), nil
	}
	return UpdateFrame(e), nil
}

// UpdateFrame is the "update" frame of an update event:
// {"type":"update","room","seq","kind","message"}.
func UpdateFrame(e RoomEvent) []byte {
	b := make([]byte, 0, 80+len(e.Message.JSON))
	b = append(b, `{"type":"update","room":`...)
	b = strconv.AppendQuote(b, e.Message.RoomID)
	b = append(append(b, `,"seq":`...), strconv.FormatInt(e.Seq, 10)...)
	b = append(append(b, `,"kind":`...), strconv.Quote(e.Kind)...)
	b = append(append(b, `,"message":`...), e.Message.JSON...)
	return append(b, '}')
}
