// Package chat holds the vocabulary shared by every other package of
// Switchboard: users, rooms, messages and the error type that both the HTTP
// API and the WebSocket protocol turn into their error shape. It imports
// nothing of ours.
package chat

import (
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits from SPEC §3–§5.
const (
	MaxBodyChars     = 4000
	MaxClientIDChars = 64
	MinPasswordChars = 8
	// DefaultPageSize and MaxPageSize bound the pages of history and
	// replies.
	DefaultPageSize = 50
	MaxPageSize     = 200
)

// Phone verification (SPEC §8): a number gets or sends SMS only after its
// owner entered a code sent to it.
const (
	// PhoneCodeDigits is the length of a code.
	PhoneCodeDigits = 6
	// PhoneCodesPerWindow is the most codes one account may ask for
	// within any PhoneCodeWindow.
	PhoneCodesPerWindow = 3
	PhoneCodeWindow     = time.Hour
	// PhoneCodeTries is how many wrong codes void a code.
	PhoneCodeTries = 5
	// PhoneCodeLifetime is how long a code works once it is sent.
	PhoneCodeLifetime = 10 * time.Minute
)

// Message sources (SPEC §5).
const (
	SourceWeb   = "web"
	SourceAPI   = "api"
	SourceSMS   = "sms"
	SourceSlack = "slack"
)

// User is the public view of an account.
type User struct {
	ID          string `json:"id"`
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
}

// Profile is the account as its owner sees it (GET /api/v1/me).
type Profile struct {
	User
	Phone *string `json:"phone"`
	// PhoneVerified is set once the owner entered the code sent to Phone;
	// only a verified number gets or sends SMS.
	PhoneVerified bool      `json:"phone_verified"`
	SMSNotify     bool      `json:"sms_notify"`
	SlackUserID   *string   `json:"slack_user_id"`
	CreatedAt     time.Time `json:"created_at"`
}

// Room visibilities.
const (
	Public  = "public"
	Private = "private"
	// Direct is a room of two users and no name (SPEC §14).
	Direct = "direct"
)

// Room is a room as listed to one of its members.
type Room struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Visibility  string `json:"visibility"`
	LastSeq     int64  `json:"last_seq"`
	LastReadSeq int64  `json:"last_read_seq"`
	// Unread counts the messages after LastReadSeq (not the updates).
	Unread int64 `json:"unread"`
	// Mentions counts the unread messages that mention the reader.
	Mentions int64 `json:"mentions"`
	// Topic is up to MaxTopicChars characters; "" when none.
	Topic string `json:"topic"`
	// Archived rooms are read-only (SPEC §14).
	Archived bool `json:"archived"`
	// Peer is, in a direct room's row of the room list, the other user.
	Peer *User `json:"peer,omitempty"`
}

// MarshalJSON writes the name of a direct room, which has none, as null.
func (r Room) MarshalJSON() ([]byte, error) {
	type plain Room
	var name *string
	if r.Visibility != Direct {
		name = &r.Name
	}
	return json.Marshal(struct {
		plain
		Name *string `json:"name"`
	}{plain(r), name})
}

// Membership is a user's membership of a room as a join or an addition
// made it: connections of the user subscribe to the room from FromSeq, the
// room's last seq when the membership began (what came before is history).
type Membership struct {
	UserID  string
	RoomID  string
	FromSeq int64
	// New is false when the user was a member already and nothing changed.
	New bool
}

// Message is one stored message or reply (SPEC §5).
type Message struct {
	ID         string    `json:"id"`
	RoomID     string    `json:"room_id"`
	Seq        int64     `json:"seq"`
	Sender     User      `json:"sender"`
	Body       string    `json:"body"`
	ParentID   *string   `json:"parent_id"`
	ReplyCount int       `json:"reply_count"`
	Source     string    `json:"source"`
	ClientID   *string   `json:"client_id"`
	CreatedAt  time.Time `json:"created_at"`
	// The state changes bring (SPEC §13).
	EditedAt *time.Time `json:"edited_at"`
	// Deleted: a tombstone, with Body "" and no reactions.
	Deleted   bool       `json:"deleted"`
	Reactions []Reaction `json:"reactions"` // by first use; never nil once encoded
	Mentions  []string   `json:"mentions"`  // user ids; never nil once encoded
}

// Reaction is one emoji on a message and who put it there, in order.
type Reaction struct {
	Emoji   string   `json:"emoji"`
	Count   int      `json:"count"`
	UserIDs []string `json:"user_ids"`
}

// NewMessage is what a sender asks to store.
type NewMessage struct {
	RoomID     string
	SenderID   string
	Body       string
	ParentID   string // empty: a top-level message
	ClientID   string // empty: not idempotent
	Source     string
	ExternalID string // SMS MessageSid or Slack event_id; empty for web/api
}

// NormalizeBody trims the body and checks the SPEC §5 rules: valid UTF-8,
// 1–4000 characters (code points, not bytes) after trimming, and not made
// only of characters that show nothing (the display names' rule, see
// invisible).
func NormalizeBody(body string) (string, error) {
	if !utf8.ValidString(body) {
		return "", Errorf(CodeBadRequest, "body is not valid UTF-8")
	}
	if strings.ContainsRune(body, 0) {
		return "", Errorf(CodeBadRequest, "body contains a NUL character")
	}
	body = strings.TrimSpace(body)
	n := utf8.RuneCountInString(body)
	switch {
	case n == 0:
		return "", Errorf(CodeBadRequest, "body is empty")
	case onlyInvisible(body):
		return "", Errorf(CodeBadRequest, "body has no visible character")
	case n > MaxBodyChars:
		return "", Errorf(CodeTooLarge, "body has %d characters; the limit is %d", n, MaxBodyChars)
	}
	return body, nil
}

// Validate checks everything about m that does not need the database.
func (m *NewMessage) Validate() error {
	body, err := NormalizeBody(m.Body)
	if err != nil {
		return err
	}
	m.Body = body
	if !utf8.ValidString(m.ClientID) || strings.ContainsRune(m.ClientID, 0) {
		return Errorf(CodeBadRequest, "client_id must be valid UTF-8 without NUL")
	}
	if utf8.RuneCountInString(m.ClientID) > MaxClientIDChars {
		return Errorf(CodeBadRequest, "client_id is longer than %d characters", MaxClientIDChars)
	}
	return nil
}

// Session is who an access token speaks for.
type Session struct {
	User User
	// ID names the session (SPEC §3): one login or register and every
	// token pair refreshed from it. Logout ends it.
	ID        string
	ExpiresAt time.Time // when the token expires
}

// EndedSession is a session that ended (logout, logout-all, a password
// change, a reused refresh token) and when.
type EndedSession struct {
	ID      string
	EndedAt time.Time
}

// Cursor is a member's position in one room.
type Cursor struct {
	RoomID       string
	LastSeq      int64 // the room's newest seq
	DeliveredSeq int64 // highest seq written to any of the member's connections
	ReadSeq      int64 // highest seq the member marked read
}

// ProfileUpdate holds the fields of PATCH /api/v1/me; nil leaves a field as
// it is, and a pointer to "" clears phone or slack_user_id. A new phone
// number is stored unverified (see storage.Store.UpdateProfile).
type ProfileUpdate struct {
	DisplayName *string
	Phone       *string
	SMSNotify   *bool
	SlackUserID *string
}

// HistoryQuery selects one page of a room's history (SPEC §5). At most one
// of BeforeSeq, AfterSeq, Since and Cursor is set; none means the newest.
type HistoryQuery struct {
	BeforeSeq *int64 // the Limit newest with a smaller seq (paging back)
	AfterSeq  *int64 // the Limit oldest with a greater seq (catching up)
	// Since: the Limit oldest created strictly after that instant.
	Since *time.Time
	// Cursor: the next page of an earlier query (its Page.NextCursor).
	Cursor string
	Limit  *int // nil means the default, 50; the cursor's own with Cursor
}

// Page is one page of history, ascending by seq. NextCursor is "" when
// there is no more.
type Page struct {
	Messages   []EncodedMessage
	NextCursor string
}

// EncodedMessage is a message with its JSON encoding (SPEC §5), made once
// where the message is read or stored and shared by every answer and frame
// that carries it, on every connection: never modify JSON. It encodes as
// JSON, as is.
type EncodedMessage struct {
	Message
	JSON []byte
}

// Encode returns m with its encoding. Nil Reactions and Mentions encode
// as empty lists.
func Encode(m Message) EncodedMessage {
	if m.Reactions == nil {
		m.Reactions = []Reaction{}
	}
	if m.Mentions == nil {
		m.Mentions = []string{}
	}
	b, err := json.Marshal(&m)
	if err != nil {
		// A Message holds strings, numbers and a time: nothing that fails.
		panic("chat: encode message: " + err.Error())
	}
	return EncodedMessage{Message: m, JSON: b}
}

// EncodeAll encodes each of msgs.
func EncodeAll(msgs []Message) []EncodedMessage {
	out := make([]EncodedMessage, len(msgs))
	for i := range msgs {
		out[i] = Encode(msgs[i])
	}
	return out
}

// MarshalJSON returns the encoding.
func (e EncodedMessage) MarshalJSON() ([]byte, error) { return e.JSON, nil }
