package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/internal/testvectors"
)

// FuzzDecodeFrame checks the invariants of decodeFrame on any input. Its
// seed corpus in testdata/fuzz/FuzzDecodeFrame holds a valid frame of every
// type, malformed and wrongly typed frames, and every Autobahn 6.x payload,
// raw and wrapped in a ping id.
func FuzzDecodeFrame(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		frame, err := decodeFrame(data)

		// Invalid UTF-8, and only that, is errInvalidUTF8 (close 1007).
		if !utf8.Valid(data) {
			require.ErrorIs(t, err, errInvalidUTF8)
			return
		}
		require.NotErrorIs(t, err, errInvalidUTF8)

		// Every other error is a bad_request for the client.
		if err != nil {
			var ce *chat.Error
			require.ErrorAs(t, err, &ce)
			require.Equal(t, chat.CodeBadRequest, ce.Code, "%v", err)
			require.NotEmpty(t, ce.Message)
			return
		}

		// What is accepted is one JSON object ...
		require.True(t, json.Valid(data), "accepted a frame that is not valid JSON: %q", data)
		require.True(t, strings.HasPrefix(strings.TrimLeft(string(data), " \t\r\n"), "{"), "accepted a non-object: %q", data)
		// ... of a known type with the fields that type needs.
		requireWellFormed(t, frame)
	})
}

// requireWellFormed checks what decodeFrame promises of a frame it accepts.
func requireWellFormed(t *testing.T, f clientFrame) {
	t.Helper()
	known := []string{"auth", "send", "subscribe", "unsubscribe", "history", "typing", "read", "ping"}
	require.Contains(t, known, f.Type)
	hasRoom := f.Room != nil && *f.Room != ""
	switch f.Type {
	case "auth":
		require.NotEmpty(t, f.Token)
	case "send":
		require.True(t, hasRoom, "send without room")
		require.NotNil(t, f.Body, "send without body")
	case "subscribe", "unsubscribe", "typing":
		require.True(t, hasRoom, "%s without room", f.Type)
	case "history":
		// Its query is checked by the history service.
		require.True(t, hasRoom, "history without room")
	case "read":
		require.True(t, hasRoom, "read without room")
		require.NotNil(t, f.Seq)
		require.GreaterOrEqual(t, *f.Seq, int64(0))
	}
}

// jsonStringBytes quotes p as a JSON string byte for byte: it escapes what
// JSON requires (quote, backslash, control characters) and leaves every
// other byte, invalid UTF-8 included, as it is. (encoding/json would turn
// invalid bytes into U+FFFD.)
func jsonStringBytes(p []byte) []byte {
	out := []byte{'"'}
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			out = append(out, '\\', c)
		case c < 0x20:
			out = append(out, fmt.Sprintf(`\u%04x`, c)...)
		default:
			out = append(out, c)
		}
	}
	return append(out, '"')
}

// pingWithID is {"type":"ping","id":<payload as a JSON string>}.
func pingWithID(payload []byte) []byte {
	return append(append([]byte(`{"type":"ping","id":`), jsonStringBytes(payload)...), '}')
}

func TestDecodeFrameAutobahn(t *testing.T) {
	t.Parallel()

	for _, ac := range testvectors.AutobahnUTF8(t) {
		t.Run(ac.ID, func(t *testing.T) {
			t.Parallel()
			frame, err := decodeFrame(pingWithID(ac.Payload))
			if !ac.Valid {
				require.ErrorIs(t, err, errInvalidUTF8)
				return
			}
			require.NoError(t, err)
			require.Equal(t, "ping", frame.Type)
			require.NotNil(t, frame.ID)
			require.Equal(t, string(ac.Payload), *frame.ID)
		})
	}
}

func TestDecodeFrame(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name     string
		frame    string
		wantType string // "" when an error is wanted
		wantID   *string
	}{
		{name: "Ping", frame: `{"type":"ping","id":"1"}`, wantType: "ping", wantID: idPtr("1")},
		{name: "PingTrailingNewline", frame: "{\"type\":\"ping\"}\n", wantType: "ping"},
		{name: "Send", frame: `{"type":"send","room":"1","body":"hi","client_id":"c"}`, wantType: "send"},
		{name: "Read", frame: `{"type":"read","room":"1","seq":0}`, wantType: "read"},
		{name: "HistoryDefaults", frame: `{"type":"history","room":"1"}`, wantType: "history"},
		{name: "InvalidJSON", frame: `{"type":`},
		{name: "WrongIDType", frame: `{"type":"ping","id":5}`},
		{name: "WrongTypeKeepsID", frame: `{"type":"send","id":"x","room":5,"body":"b"}`, wantID: idPtr("x")},
		{name: "UnknownTypeKeepsID", frame: `{"type":"nope","id":"y"}`, wantID: idPtr("y")},
		{name: "TwoObjects", frame: `{"type":"ping"}{"type":"ping"}`},
		{name: "TrailingBrace", frame: `{"type":"ping","id":"z"}}`, wantID: idPtr("z")},
		{name: "TrailingBracket", frame: `{"type":"ping","id":"z"}]`, wantID: idPtr("z")},
		// A history query's own rules (limit 1-200, one of before_seq,
		// after_seq, since, cursor) are the history service's, shared with
		// the HTTP API: the frame decodes.
		{name: "HistoryQueryDecodes", frame: `{"type":"history","room":"1","limit":0,"since":"2026-01-02T03:04:05Z","cursor":"x"}`, wantType: "history"},
		{name: "HistorySinceNotATime", frame: `{"type":"history","room":"1","since":"yesterday"}`},
		{name: "ReadNegativeSeq", frame: `{"type":"read","room":"1","seq":-2}`},
		{name: "SendEmptyRoom", frame: `{"type":"send","room":"","body":"b"}`},
		{name: "AuthEmptyToken", frame: `{"type":"auth","token":""}`},
		{name: "Edit", frame: `{"type":"edit","message_id":"1","body":"b"}`, wantType: "edit"},
		{name: "EditNoBody", frame: `{"type":"edit","message_id":"1"}`},
		{name: "EditNoMessage", frame: `{"type":"edit","body":"b"}`},
		{name: "Delete", frame: `{"type":"delete","message_id":"1"}`, wantType: "delete"},
		{name: "DeleteEmptyMessage", frame: `{"type":"delete","message_id":""}`},
		{name: "ReactAdd", frame: `{"type":"react","message_id":"1","emoji":"👍","op":"add"}`, wantType: "react"},
		{name: "ReactRemove", frame: `{"type":"react","message_id":"1","emoji":"👍","op":"remove"}`, wantType: "react"},
		{name: "ReactNoOp", frame: `{"type":"react","message_id":"1","emoji":"👍"}`},
		{name: "ReactNoEmoji", frame: `{"type":"react","message_id":"1","op":"add"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, err := decodeFrame([]byte(tt.frame))
			if tt.wantType == "" {
				var ce *chat.Error
				require.True(t, errors.As(err, &ce), "want a bad_request, got %v (type %q)", err, f.Type)
				require.Equal(t, chat.CodeBadRequest, ce.Code)
			} else {
				require.NoError(t, err)
				require.Equal(t, tt.wantType, f.Type)
			}
			require.Equal(t, tt.wantID, f.ID)
		})
	}
}

func idPtr(s string) *string { return &s }
