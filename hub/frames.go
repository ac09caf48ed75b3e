package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/switchboard-chat/switchboard/chat"
)

// clientFrame is any client→server frame of SPEC §6. Pointer fields tell
// "absent" from zero.
type clientFrame struct {
	Type      string           `json:"type"`
	ID        *string          `json:"id"`
	Token     string           `json:"token"`
	Resume    map[string]int64 `json:"resume"`
	Room      *string          `json:"room"`
	Body      *string          `json:"body"`
	ParentID  *string          `json:"parent_id"`
	ClientID  *string          `json:"client_id"`
	AfterSeq  *int64           `json:"after_seq"`
	BeforeSeq *int64           `json:"before_seq"`
	Since     *time.Time       `json:"since"`
	Cursor    *string          `json:"cursor"`
	Limit     *int             `json:"limit"`
	Seq       *int64           `json:"seq"`
	MessageID *string          `json:"message_id"`
	Emoji     *string          `json:"emoji"`
	Op        *string          `json:"op"`
}

// errInvalidUTF8 means the frame must be closed with 1007, not answered.
var errInvalidUTF8 = errors.New("text frame is not valid UTF-8")

// decodeFrame parses one client frame and checks that its type is known and
// that the fields that type needs are present and well typed. It returns
// errInvalidUTF8 for bytes that are not UTF-8 (encoding/json would silently
// replace them) and a *chat.Error with code bad_request for anything else
// wrong; the frame's id is returned whenever it could be read, so the error
// can echo it.
func decodeFrame(data []byte) (clientFrame, error) {
	var f clientFrame
	if !utf8.Valid(data) {
		return f, errInvalidUTF8
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		f.ID = frameID(data)
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			return f, chat.Errorf(chat.CodeBadRequest, "field %q has the wrong type", typeErr.Field)
		}
		return f, chat.Errorf(chat.CodeBadRequest, "frame is not a JSON object")
	}
	// dec.More reports false before a stray '}' or ']', so check that only
	// whitespace follows the object.
	if len(bytes.TrimLeft(data[dec.InputOffset():], " \t\r\n")) > 0 {
		return f, chat.Errorf(chat.CodeBadRequest, "one JSON object per frame")
	}
	if err := chat.CheckJSONEscapes(data); err != nil {
		return f, err
	}
	need := func(ok bool, field string) error {
		if !ok {
			return chat.Errorf(chat.CodeBadRequest, "%s needs %q", f.Type, field)
		}
		return nil
	}
	room := f.Room != nil && *f.Room != ""
	switch f.Type {
	case "auth":
		return f, need(f.Token != "", "token")
	case "send":
		if err := need(room, "room"); err != nil {
			return f, err
		}
		return f, need(f.Body != nil, "body")
	case "edit":
		if err := need(f.MessageID != nil && *f.MessageID != "", "message_id"); err != nil {
			return f, err
		}
		return f, need(f.Body != nil, "body")
	case "delete":
		return f, need(f.MessageID != nil && *f.MessageID != "", "message_id")
	case "react":
		if err := need(f.MessageID != nil && *f.MessageID != "", "message_id"); err != nil {
			return f, err
		}
		if err := need(f.Emoji != nil, "emoji"); err != nil {
			return f, err
		}
		return f, need(f.Op != nil && (*f.Op == "add" || *f.Op == "remove"), `op ("add" or "remove")`)
	case "subscribe", "unsubscribe", "typing":
		return f, need(room, "room")
	case "history":
		// The query's own rules are the history service's, shared with
		// the HTTP API.
		return f, need(room, "room")
	case "read":
		if err := need(room, "room"); err != nil {
			return f, err
		}
		return f, need(f.Seq != nil && *f.Seq >= 0, "seq")
	case "ping":
		return f, nil
	case "":
		return f, chat.Errorf(chat.CodeBadRequest, "frame has no type")
	default:
		return f, chat.Errorf(chat.CodeBadRequest, "unknown frame type %q", f.Type)
	}
}

// frameID digs the request id out of a frame that did not decode as a whole.
func frameID(data []byte) *string {
	var probe struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return nil
	}
	if s, ok := probe.ID.(string); ok {
		return &s
	}
	return nil
}

// Server→client frames.

type readyFrame struct {
	Type      string      `json:"type"`
	User      chat.User   `json:"user"`
	SessionID string      `json:"session_id"`
	Rooms     []chat.Room `json:"rooms"`
}

type ackFrame struct {
	Type    string        `json:"type"`
	ID      *string       `json:"id"`
	Message *chat.Message `json:"message"`
}

type typingFrame struct {
	Type string    `json:"type"`
	Room string    `json:"room"`
	User chat.User `json:"user"`
}

type subscribedFrame struct {
	Type    string  `json:"type"`
	ID      *string `json:"id"`
	Room    string  `json:"room"`
	LastSeq int64   `json:"last_seq"`
}

type unsubscribedFrame struct {
	Type string  `json:"type"`
	ID   *string `json:"id"`
	Room string  `json:"room"`
	// Reason, when the server ended the subscription: "left", "removed",
	// "banned" (SPEC §4).
	Reason string `json:"reason,omitempty"`
}

type authedFrame struct {
	Type      string    `json:"type"`
	ID        *string   `json:"id"`
	ExpiresAt time.Time `json:"expires_at"`
}

type historyFrame struct {
	Type       string                `json:"type"`
	ID         *string               `json:"id"`
	Room       string                `json:"room"`
	Messages   []chat.EncodedMessage `json:"messages"`
	NextCursor *string               `json:"next_cursor"`
}

type pongFrame struct {
	Type string  `json:"type"`
	ID   *string `json:"id"`
}

type errorFrame struct {
	Type         string  `json:"type"`
	ID           *string `json:"id"`
	Code         string  `json:"code"`
	Message      string  `json:"message"`
	RetryAfterMs *int64  `json:"retry_after_ms,omitempty"`
}

func newErrorFrame(id *string, err error) errorFrame {
	e := chat.ErrorOf(err)
	return errorFrame{Type: "error", ID: id, Code: string(e.Code), Message: e.Message}
}

// encode marshals a server frame. The frame types above hold nothing that
// can fail to marshal, so a failure is a programming error.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("hub: encode %T: %v", v, err))
	}
	return b
}

// MessageEvent is the event that delivers m: its "message" frame, made
// once for every connection it goes to from m's encoding.
func MessageEvent(m chat.EncodedMessage) Event {
	return Event{Room: m.RoomID, Seq: m.Seq, From: m.Sender.ID, Frame: messageFrame(m)}
}

// messageFrame is the "message" frame of m: {"type":"message","message":…}.
func messageFrame(m chat.EncodedMessage) []byte {
	const head, tail = `{"type":"message","message":`, `}`
	b := make([]byte, 0, len(head)+len(m.JSON)+len(tail))
	return append(append(append(b, head...), m.JSON...), tail...)
}

// UpdateEvent is the event that delivers an update (SPEC §13): its
// "update" frame. from is who made the change.
func UpdateEvent(ev chat.RoomEvent, from string) Event {
	return Event{Room: ev.Message.RoomID, Seq: ev.Seq, From: from, Frame: chat.UpdateFrame(ev)}
}

// eventFrame is the frame of a stored event read back from the store.
func eventFrame(ev chat.RoomEvent) []byte {
	if ev.Kind == chat.KindMessage {
		return messageFrame(ev.Message)
	}
	return chat.UpdateFrame(ev)
}
