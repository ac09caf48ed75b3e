package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/hub"
)

// WS is a client of the WebSocket protocol (SPEC §6) that splits the
// server's batched frames into objects and hands them out one at a time.
type WS struct {
	// Conn is the connection, for what the methods do not cover: closing
	// it, or writing a frame that may fail.
	Conn *websocket.Conn
	// WithPresence keeps presence events; other tests never see them, so
	// that who else happens to connect does not change what they read.
	WithPresence bool

	t       testing.TB
	pending []map[string]any
}

// Dial connects to the WebSocket endpoint url ("ws://host/ws") with the
// protocol's subprotocol and the given request headers, and closes the
// connection when t ends.
func Dial(t testing.TB, url string, h http.Header) *WS {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{hub.Subprotocol}})
	require.NoError(t, err)
	ws.SetReadLimit(-1)
	t.Cleanup(func() { ws.CloseNow() })
	return &WS{t: t, Conn: ws}
}

// DialWS connects to the server's /ws with the token in the Authorization
// header ("" for none).
func (c *Client) DialWS(t testing.TB, token string) *WS {
	t.Helper()
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return c.DialWSWith(t, h)
}

// DialWSWith connects to the server's /ws with the given request headers.
func (c *Client) DialWSWith(t testing.TB, h http.Header) *WS {
	t.Helper()
	return Dial(t, c.WSURL(), h)
}

// WSURL is the URL of the server's WebSocket endpoint.
func (c *Client) WSURL() string { return "ws" + strings.TrimPrefix(c.URL, "http") + "/ws" }

// SubscribedClient dials the server as u and waits until it is subscribed
// to its rooms (one subscribed frame per room).
func (c *Client) SubscribedClient(t testing.TB, u User, rooms int) *WS {
	t.Helper()
	ws := c.DialWS(t, u.Token)
	ws.Ready()
	for range rooms {
		ws.NextOf("subscribed")
	}
	return ws
}

// Send writes v as one JSON frame.
func (c *WS) Send(v any) {
	c.t.Helper()
	raw, err := json.Marshal(v)
	require.NoError(c.t, err)
	c.SendRaw(raw)
}

// SendRaw writes raw as one text frame.
func (c *WS) SendRaw(raw []byte) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(c.t, c.Conn.Write(ctx, websocket.MessageText, raw))
}

// Next returns the next server object, waiting up to 10 s.
func (c *WS) Next() map[string]any {
	c.t.Helper()
	obj, err := c.NextErr(10 * time.Second)
	require.NoError(c.t, err)
	return obj
}

// NextErr returns the next server object, or the error that ended the
// wait: the connection's close, or wait passing.
func (c *WS) NextErr(wait time.Duration) (map[string]any, error) {
	for len(c.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		typ, data, err := c.Conn.Read(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageText {
			return nil, errors.New("server sent a binary frame")
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			var obj map[string]any
			if err := json.Unmarshal(line, &obj); err != nil {
				return nil, fmt.Errorf("server object %q: %w", line, err)
			}
			if obj["type"] == "presence" && !c.WithPresence {
				continue
			}
			c.pending = append(c.pending, obj)
		}
	}
	obj := c.pending[0]
	c.pending = c.pending[1:]
	return obj, nil
}

// NextOf returns the next object of type typ, skipping others of the types
// in skip; any other type fails the test.
func (c *WS) NextOf(typ string, skip ...string) map[string]any {
	c.t.Helper()
	for {
		obj := c.Next()
		if obj["type"] == typ {
			return obj
		}
		require.Contains(c.t, skip, obj["type"], "waiting for %s, got %v", typ, obj)
	}
}

// Ready reads until the ready frame.
func (c *WS) Ready() map[string]any {
	c.t.Helper()
	return c.NextOf("ready")
}

// CloseStatus waits for the server to close the connection and returns
// the close code.
func (c *WS) CloseStatus(wait time.Duration) websocket.StatusCode {
	c.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		_, err := c.NextErr(time.Until(deadline))
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
	c.t.Fatalf("connection still open after %s", wait)
	return -1
}

// MessageSeq returns the seq of a message frame.
func MessageSeq(obj map[string]any) int64 {
	m := obj["message"].(map[string]any)
	return int64(m["seq"].(float64))
}

// EventSeq is the seq of a "message" or "update" frame (SPEC §13).
func EventSeq(obj map[string]any) int64 {
	if obj["type"] == "update" {
		return int64(obj["seq"].(float64))
	}
	return MessageSeq(obj)
}

// NextEvent returns the next "message" or "update" frame of c, skipping
// the others.
func NextEvent(t testing.TB, c *WS) map[string]any {
	t.Helper()
	for {
		if obj := c.Next(); obj["type"] == "message" || obj["type"] == "update" {
			return obj
		}
	}
}

// SendWS sends body into room over c and waits for its ack, which it
// returns.
func SendWS(t testing.TB, c *WS, room, body string) map[string]any {
	t.Helper()
	id := Unique("s-")
	c.Send(map[string]any{"type": "send", "id": id, "room": room, "body": body})
	for {
		obj := c.Next()
		if obj["type"] == "ack" && obj["id"] == id {
			return obj["message"].(map[string]any)
		}
		require.Contains(t, []any{"message", "update", "typing", "subscribed"}, obj["type"], "waiting for ack, got %v", obj)
	}
}

// ExpectMessages reads message frames for room until it has seqs from..to,
// failing on any gap, repeat or disorder, and returns the messages.
func ExpectMessages(t testing.TB, c *WS, room string, from, to int64) []map[string]any {
	t.Helper()
	var got []map[string]any
	want := from
	for want <= to {
		obj := c.NextOf("message", "subscribed", "ack", "typing")
		m := obj["message"].(map[string]any)
		if m["room_id"] != room {
			continue
		}
		require.Equal(t, want, MessageSeq(obj), "message order in room %s", room)
		got = append(got, m)
		want++
	}
	return got
}

// RequireQuiet checks that nothing of room reaches the clients: it sends a
// message into barrier through sender (published after whatever was sent
// to room before, from the same node, so it arrives after it) and reads
// each client up to it.
func RequireQuiet(t testing.TB, room string, sender *WS, barrier string, clients ...*WS) {
	t.Helper()
	id := SendWS(t, sender, barrier, "barrier")["id"]
	for _, c := range clients {
		for {
			obj := c.Next()
			require.NotEqual(t, room, obj["room"], "room %s reached the connection: %v", room, obj)
			if obj["type"] == "message" {
				m := obj["message"].(map[string]any)
				require.NotEqual(t, room, m["room_id"], "a message of room %s reached the connection: %v", room, obj)
				if m["id"] == id {
					break
				}
			}
		}
	}
}

// DrainUntilClosed reads until the server ends the connection and returns
// the objects read on the way and the close code (-1: no close frame).
func DrainUntilClosed(t testing.TB, c *WS, wait time.Duration) ([]map[string]any, websocket.StatusCode) {
	t.Helper()
	var objs []map[string]any
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		obj, err := c.NextErr(time.Until(deadline))
		if err != nil {
			return objs, websocket.CloseStatus(err)
		}
		objs = append(objs, obj)
	}
	t.Fatalf("connection still open after %s (read %d objects)", wait, len(objs))
	return nil, -1
}

// RequireClosedWithin waits for the server to close c with code, within
// wait of start, and fails if a message reaches c meanwhile.
func RequireClosedWithin(t testing.TB, c *WS, code websocket.StatusCode, start time.Time, wait time.Duration) {
	t.Helper()
	for {
		obj, err := c.NextErr(time.Until(start.Add(wait)))
		if err != nil {
			require.Equal(t, code, websocket.CloseStatus(err), "closed with %v", err)
			return
		}
		require.NotEqual(t, "message", obj["type"], "the socket got a message after its session ended: %v", obj)
	}
}

// RequireOpen checks that c still answers.
func RequireOpen(t testing.TB, c *WS) {
	t.Helper()
	c.Send(map[string]any{"type": "ping", "id": "still-open"})
	require.Equal(t, "still-open", c.NextOf("pong", "subscribed", "message", "typing", "presence")["id"])
}
