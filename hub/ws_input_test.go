package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/internal/testvectors"
)

// These tests cover SPEC §2 and §6 for input a client gets wrong: each bad
// frame gets the answer the spec names, and another connection on the same
// node keeps working afterwards.

// inputBundle is a node with alice and bob in one room, and carol, a
// bystander on the same node, connected to a room of her own before the
// test does anything bad.
type inputBundle struct {
	s         *apitest.Node
	alice     apitest.User
	bob       apitest.User
	carol     apitest.User
	room      string // alice's and bob's
	carolRoom string
	bystander *apitest.WS
}

func setupInput(t *testing.T, tune func(*hub.Config)) *inputBundle {
	t.Helper()
	s := apitest.NewNode(t, apitest.Options{Hub: tune})
	b := &inputBundle{s: s, alice: s.Register(t, "alice"), bob: s.Register(t, "bob"), carol: s.Register(t, "carol")}
	b.room = s.CreateRoom(t, b.alice, "private")
	s.AddMember(t, b.alice, b.room, b.bob)
	b.carolRoom = s.CreateRoom(t, b.carol, "private")
	b.bystander = s.DialWS(t, b.carol.Token)
	b.bystander.Ready()
	b.bystander.NextOf("subscribed")
	return b
}

// requireNodeWorks checks that the bystander's connection, open since
// before the bad input, still sends and gets its ack, and that the node
// still accepts new connections.
func (b *inputBundle) requireNodeWorks(t *testing.T) {
	t.Helper()
	id := apitest.Unique("bystander-")
	b.bystander.Send(map[string]any{"type": "send", "id": id, "room": b.carolRoom, "body": "still here"})
	ack := b.bystander.NextOf("ack", "message")
	require.Equal(t, id, ack["id"])
	require.Equal(t, "still here", ack["message"].(map[string]any)["body"])

	c := b.s.DialWS(t, b.carol.Token)
	c.Ready()
	c.Send(map[string]any{"type": "ping", "id": "fresh"})
	require.Equal(t, "fresh", c.NextOf("pong", "subscribed", "message")["id"])
}

// history returns the bodies stored in room as u reads them, oldest first.
func (b *inputBundle) history(t *testing.T, u apitest.User, room string) []string {
	t.Helper()
	var bodies []string
	for _, m := range b.s.History(t, u, room, "limit=200").Messages {
		bodies = append(bodies, m.Body)
	}
	return bodies
}

// post stores a message through the HTTP API and returns its seq.
func (b *inputBundle) post(t *testing.T, u apitest.User, room, body string) int64 {
	t.Helper()
	return b.s.Say(t, u, room, body).Seq
}

// nextExcept returns the next object whose type is not in skip.
func nextExcept(t *testing.T, c *apitest.WS, skip ...string) map[string]any {
	t.Helper()
	for {
		obj := c.Next()
		if !slices.Contains(skip, obj["type"].(string)) {
			return obj
		}
	}
}

// writeFrame writes one frame of any type; unlike sendRaw it tolerates a
// connection the server already closed.
func writeFrame(c *apitest.WS, typ websocket.MessageType, data []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Conn.Write(ctx, typ, data)
}

func TestWSBadFrameAnswered(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		frame  string // ROOM is replaced by the room's id
		wantID any    // the id the error echoes; nil for JSON null
	}{
		{name: "InvalidJSON", frame: `{"type":"send","id":"x1",`, wantID: nil},
		{name: "NotJSONAtAll", frame: `hello`, wantID: nil},
		{name: "JSONArray", frame: `[{"type":"ping"}]`, wantID: nil},
		{name: "JSONString", frame: `"ping"`, wantID: nil},
		{name: "JSONNull", frame: `null`, wantID: nil},
		{name: "UnknownType", frame: `{"type":"dance","id":"u1"}`, wantID: "u1"},
		{name: "MissingType", frame: `{"id":"u2","room":"ROOM"}`, wantID: "u2"},
		{name: "TypeAsNumber", frame: `{"type":7,"id":"u3"}`, wantID: "u3"},
		{name: "RoomAsNumber", frame: `{"type":"send","id":"f1","room":12,"body":"hi"}`, wantID: "f1"},
		{name: "BodyAsNumber", frame: `{"type":"send","id":"f2","room":"ROOM","body":12}`, wantID: "f2"},
		{name: "IDAsNumber", frame: `{"type":"send","id":12,"room":"ROOM","body":"hi"}`, wantID: nil},
		{name: "SeqAsString", frame: `{"type":"read","id":"f3","room":"ROOM","seq":"1"}`, wantID: "f3"},
		{name: "SendWithoutBody", frame: `{"type":"send","id":"m1","room":"ROOM"}`, wantID: "m1"},
		{name: "SendWithNullBody", frame: `{"type":"send","id":"m2","room":"ROOM","body":null}`, wantID: "m2"},
		{name: "SendWithoutRoom", frame: `{"type":"send","id":"m3","body":"hi"}`, wantID: "m3"},
		{name: "SendWithEmptyBody", frame: `{"type":"send","id":"m4","room":"ROOM","body":"   "}`, wantID: "m4"},
		{name: "SubscribeWithoutRoom", frame: `{"type":"subscribe","id":"m5"}`, wantID: "m5"},
		{name: "ReadWithoutSeq", frame: `{"type":"read","id":"m6","room":"ROOM"}`, wantID: "m6"},
		{name: "ReadNegativeSeq", frame: `{"type":"read","id":"m7","room":"ROOM","seq":-1}`, wantID: "m7"},
		{name: "HistoryLimitTooBig", frame: `{"type":"history","id":"m8","room":"ROOM","limit":201}`, wantID: "m8"},
		{name: "TwoObjectsInOneFrame", frame: `{"type":"ping","id":"t1"}{"type":"ping","id":"t2"}`, wantID: "t1"},
		// SPEC §2: invalid JSON is bad_request. A stray closing bracket after
		// the object makes the frame invalid JSON.
		{name: "TrailingBrace", frame: `{"type":"send","id":"t3","room":"ROOM","body":"hi"}}`, wantID: "t3"},
		{name: "TrailingBracket", frame: `{"type":"ping","id":"t4"}]`, wantID: "t4"},
		{name: "AuthWithoutToken", frame: `{"type":"auth","id":"a1"}`, wantID: "a1"},
		{name: "HistoryNegativeBeforeSeq", frame: `{"type":"history","id":"m9","room":"ROOM","before_seq":-1}`, wantID: "m9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupInput(t, nil)
			c := b.s.DialWS(t, b.alice.Token)
			c.Ready()

			c.SendRaw([]byte(strings.ReplaceAll(tt.frame, "ROOM", b.room)))
			e := c.NextOf("error", "subscribed")
			require.Equal(t, "bad_request", e["code"], "error: %v", e)
			require.Contains(t, e, "id")
			require.Equal(t, tt.wantID, e["id"])
			require.NotEmpty(t, e["message"])
			require.NotContains(t, e, "retry_after_ms")

			// The connection stays open and answers the next request.
			c.Send(map[string]any{"type": "ping", "id": "after"})
			require.Equal(t, "after", c.NextOf("pong", "subscribed")["id"])
			// A failed request changes nothing.
			require.Empty(t, b.history(t, b.alice, b.room))
			b.requireNodeWorks(t)
		})
	}
}

// TestWSBadFrameWindow: valid frames between bad ones do not reset the
// count (SPEC §6): 9 garbage frames, a ping, 9 more and a ping; the 11th
// bad frame within the minute closes the connection with 1008.
func TestWSBadFrameWindow(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.DialWS(t, b.alice.Token)
	c.Ready()
	c.NextOf("subscribed")

	for round := range 2 {
		for i := range 9 {
			c.SendRaw([]byte(fmt.Sprintf("garbage %d/%d", round, i)))
		}
		c.Send(map[string]any{"type": "ping", "id": fmt.Sprintf("round-%d", round)})
	}
	objs, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
	require.Equal(t, websocket.StatusPolicyViolation, code)
	errors, pongs := 0, 0
	for _, obj := range objs {
		switch obj["type"] {
		case "error":
			require.Equal(t, "bad_request", obj["code"])
			errors++
		case "pong":
			pongs++
		}
	}
	require.LessOrEqual(t, errors, 10, "ten bad frames are answered; the eleventh closes")
	require.LessOrEqual(t, pongs, 1, "the second ping comes after the eleventh bad frame")
	b.requireNodeWorks(t)
}

func TestWSBadFrameCloses(t *testing.T) {
	t.Parallel()

	invalid := 0
	var invalidUTF8 []testvectors.UTF8Case
	for _, ac := range testvectors.AutobahnUTF8(t) {
		// Four invalid payloads of different kinds: the first of each
		// stretch of invalid cases.
		if !ac.Valid && len(invalidUTF8) < 4 && invalid%16 == 0 {
			invalidUTF8 = append(invalidUTF8, ac)
		}
		if !ac.Valid {
			invalid++
		}
	}
	require.Len(t, invalidUTF8, 4)

	type testCase struct {
		name      string
		act       func(t *testing.T, c *apitest.WS, b *inputBundle)
		maxErrors int // bad_request errors before the close (queued ones may be dropped by it)
		wantCode  websocket.StatusCode
	}
	tests := []testCase{
		{
			name: "ElevenGarbageFramesInARow",
			act: func(t *testing.T, c *apitest.WS, b *inputBundle) {
				for i := range 11 {
					c.SendRaw([]byte(fmt.Sprintf("not json %d", i)))
				}
			},
			maxErrors: 10,
			wantCode:  websocket.StatusPolicyViolation,
		},
		{
			name: "FrameOver64KiB",
			act: func(t *testing.T, c *apitest.WS, b *inputBundle) {
				_ = writeFrame(c, websocket.MessageText, paddedPing(64<<10+1))
			},
			wantCode: websocket.StatusMessageTooBig,
		},
		{
			name: "BinaryFrame",
			act: func(t *testing.T, c *apitest.WS, b *inputBundle) {
				require.NoError(t, writeFrame(c, websocket.MessageBinary, []byte(`{"type":"ping"}`)))
			},
			wantCode: websocket.StatusUnsupportedData,
		},
		{
			name: "InvalidUTF8InsideJSONString",
			act: func(t *testing.T, c *apitest.WS, b *inputBundle) {
				c.SendRaw([]byte("{\"type\":\"send\",\"room\":\"" + b.room + "\",\"body\":\"caf\xe9\"}"))
			},
			wantCode: websocket.StatusInvalidFramePayloadData,
		},
	}
	for _, ac := range invalidUTF8 {
		tests = append(tests, testCase{
			name: "InvalidUTF8Autobahn" + ac.ID,
			act: func(t *testing.T, c *apitest.WS, b *inputBundle) {
				c.SendRaw(ac.Payload)
			},
			wantCode: websocket.StatusInvalidFramePayloadData,
		})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupInput(t, nil)
			c := b.s.DialWS(t, b.alice.Token)
			c.Ready()
			c.NextOf("subscribed")

			tt.act(t, c, b)
			objs, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
			errors := 0
			for _, obj := range objs {
				require.Equal(t, "error", obj["type"], "%v", obj)
				require.Equal(t, "bad_request", obj["code"])
				errors++
			}
			require.LessOrEqual(t, errors, tt.maxErrors)
			require.Equal(t, tt.wantCode, code)
			require.Empty(t, b.history(t, b.alice, b.room))
			b.requireNodeWorks(t)
		})
	}
}

// paddedPing is a valid ping frame of exactly n bytes.
func paddedPing(n int) []byte {
	head := `{"type":"ping","id":"big"`
	return []byte(head + strings.Repeat(" ", n-len(head)-1) + "}")
}

func TestWSFrameOfExactly64KiB(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.DialWS(t, b.alice.Token)
	c.Ready()

	c.SendRaw(paddedPing(64 << 10))
	require.Equal(t, "big", c.NextOf("pong", "subscribed")["id"])
}

// TestWSAutobahnUTF8 sends every Autobahn 6.x payload: the valid ones as a
// message body (acked and stored unchanged) and as a raw frame (not JSON:
// bad_request, connection open), the invalid ones as a raw text frame on a
// connection of their own (close 1007).
func TestWSAutobahnUTF8(t *testing.T) {
	t.Parallel()
	b := setupInput(t, func(c *hub.Config) { c.RateBurst = 1000 })
	cases := testvectors.AutobahnUTF8(t)

	t.Run("ValidAsBody", func(t *testing.T) {
		c := b.s.DialWS(t, b.alice.Token)
		c.Ready()
		for _, ac := range cases {
			if !ac.Valid {
				continue
			}
			c.Send(map[string]any{"type": "send", "id": ac.ID, "room": b.room, "body": string(ac.Payload)})
			obj := nextExcept(t, c, "subscribed", "message")
			if obj["type"] == "error" {
				// U+0000 and friends may be refused, but only as bad input.
				require.Equal(t, "bad_request", obj["code"], "case %s (%x): %v", ac.ID, ac.Payload, obj)
				continue
			}
			require.Equal(t, ac.ID, obj["id"])
			require.Equal(t, strings.TrimSpace(string(ac.Payload)), obj["message"].(map[string]any)["body"], "case %s", ac.ID)
		}
	})
	t.Run("ValidAsRawFrame", func(t *testing.T) {
		var c *apitest.WS
		n := 0
		for _, ac := range cases {
			if !ac.Valid {
				continue
			}
			// Each is a bad frame, and ten are all a connection may send
			// within a minute: a fresh connection for every ten.
			if n%10 == 0 {
				c = b.s.DialWS(t, b.alice.Token)
				c.Ready()
			}
			n++
			c.SendRaw(ac.Payload)
			e := c.NextOf("error", "subscribed", "message")
			require.Equal(t, "bad_request", e["code"], "case %s", ac.ID)
			c.Send(map[string]any{"type": "ping", "id": ac.ID})
			require.Equal(t, ac.ID, c.NextOf("pong", "message")["id"])
		}
	})
	t.Run("InvalidRawFrame", func(t *testing.T) {
		for _, ac := range cases {
			if ac.Valid {
				continue
			}
			c := b.s.DialWS(t, b.alice.Token)
			c.Ready()
			c.SendRaw(ac.Payload)
			_, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
			require.Equal(t, websocket.StatusInvalidFramePayloadData, code, "case %s (%x)", ac.ID, ac.Payload)
		}
	})
	b.requireNodeWorks(t)
}

func TestWSAuth(t *testing.T) {
	t.Parallel()

	expiredToken := func(t *testing.T, u apitest.User) string {
		tokens, err := auth.New(auth.Config{Secret: apitest.Secret, Now: func() time.Time { return time.Now().Add(-time.Hour) }})
		require.NoError(t, err)
		token, _, err := tokens.Issue(u.ID, "session-1")
		require.NoError(t, err)
		return token
	}
	foreignToken := func(t *testing.T, u apitest.User) string {
		tokens, err := auth.New(auth.Config{Secret: []byte("some-other-secret-of-32-bytes!!!")})
		require.NoError(t, err)
		token, _, err := tokens.Issue(u.ID, "session-1")
		require.NoError(t, err)
		return token
	}

	tests := []struct {
		name     string
		tune     func(*hub.Config)
		header   func(t *testing.T, u apitest.User) http.Header
		first    func(t *testing.T, u apitest.User) []byte // nil: send nothing
		wantCode string                                    // the error before the close; "" for none
		wantID   any
	}{
		{
			name: "GarbageTokenInHeader",
			header: func(t *testing.T, u apitest.User) http.Header {
				return http.Header{"Authorization": {"Bearer not-a-jwt"}}
			},
			wantCode: "unauthorized",
		},
		{
			name: "ExpiredTokenInHeader",
			header: func(t *testing.T, u apitest.User) http.Header {
				return http.Header{"Authorization": {"Bearer " + expiredToken(t, u)}}
			},
			wantCode: "unauthorized",
		},
		{
			name: "ForeignSignatureInHeader",
			header: func(t *testing.T, u apitest.User) http.Header {
				return http.Header{"Authorization": {"Bearer " + foreignToken(t, u)}}
			},
			wantCode: "unauthorized",
		},
		{
			name: "NotBearerHeader",
			header: func(t *testing.T, u apitest.User) http.Header {
				return http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}}
			},
			wantCode: "unauthorized",
		},
		{
			name:     "GarbageTokenInAuthFrame",
			first:    func(t *testing.T, u apitest.User) []byte { return []byte(`{"type":"auth","token":"not-a-jwt"}`) },
			wantCode: "unauthorized",
		},
		{
			name: "ExpiredTokenInAuthFrame",
			first: func(t *testing.T, u apitest.User) []byte {
				return []byte(`{"type":"auth","token":"` + expiredToken(t, u) + `"}`)
			},
			wantCode: "unauthorized",
		},
		{
			name:     "FirstFrameNotAuth",
			first:    func(t *testing.T, u apitest.User) []byte { return []byte(`{"type":"ping","id":"p1"}`) },
			wantCode: "unauthorized",
			wantID:   "p1",
		},
		{
			name: "FirstFrameSendBeforeAuth",
			first: func(t *testing.T, u apitest.User) []byte {
				return []byte(`{"type":"send","id":"s1","room":"1","body":"sneaky"}`)
			},
			wantCode: "unauthorized",
			wantID:   "s1",
		},
		{
			name:     "FirstFrameInvalidJSON",
			first:    func(t *testing.T, u apitest.User) []byte { return []byte(`{"type":"auth",`) },
			wantCode: "bad_request",
		},
		{
			name:     "AuthFrameWithoutToken",
			first:    func(t *testing.T, u apitest.User) []byte { return []byte(`{"type":"auth","id":"e1"}`) },
			wantCode: "bad_request",
			wantID:   "e1",
		},
		{
			name: "NoAuthFrameWithinTimeout",
			tune: func(c *hub.Config) { c.AuthTimeout = 300 * time.Millisecond },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupInput(t, tt.tune)
			h := http.Header{}
			if tt.header != nil {
				h = tt.header(t, b.alice)
			}
			start := time.Now()
			c := b.s.DialWSWith(t, h)
			if tt.first != nil {
				c.SendRaw(tt.first(t, b.alice))
			}
			objs, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
			if tt.wantCode == "" {
				require.Empty(t, objs)
				require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond)
			} else {
				require.Len(t, objs, 1, "%v", objs)
				require.Equal(t, "error", objs[0]["type"])
				require.Equal(t, tt.wantCode, objs[0]["code"])
				require.Contains(t, objs[0], "id")
				require.Equal(t, tt.wantID, objs[0]["id"])
			}
			require.Equal(t, websocket.StatusCode(4401), code)
			b.requireNodeWorks(t)
		})
	}
}

// TestWSAuthTimeoutDefault keeps the default 10 s of SPEC §6 (it runs in
// parallel with everything else).
func TestWSAuthTimeoutDefault(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	start := time.Now()
	c := b.s.DialWSWith(t, http.Header{})
	objs, code := apitest.DrainUntilClosed(t, c, 15*time.Second)
	require.Empty(t, objs)
	require.Equal(t, websocket.StatusCode(4401), code)
	require.InDelta(t, 10*time.Second, time.Since(start), float64(2*time.Second))
	b.requireNodeWorks(t)
}

func TestWSOrigin(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		origin  string // "" for no Origin header
		allowed bool
	}{
		{name: "NoOrigin", origin: "", allowed: true},
		{name: "PublicURLOrigin", origin: "http://switchboard.test", allowed: true},
		{name: "PublicURLOriginUpperCase", origin: "HTTP://SWITCHBOARD.TEST", allowed: true},
		{name: "ForeignHost", origin: "http://evil.test", allowed: false},
		{name: "OtherScheme", origin: "https://switchboard.test", allowed: false},
		{name: "OtherPort", origin: "http://switchboard.test:8080", allowed: false},
		{name: "SuffixHost", origin: "http://switchboard.test.evil.test", allowed: false},
		{name: "NullOrigin", origin: "null", allowed: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupInput(t, nil)
			h := http.Header{"Authorization": {"Bearer " + b.alice.Token}}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			if tt.allowed {
				c := b.s.DialWSWith(t, h)
				require.Equal(t, b.alice.ID, c.Ready()["user"].(map[string]any)["id"])
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, resp, err := websocket.Dial(ctx, b.s.WSURL(),
				&websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{hub.Subprotocol}})
			if ws != nil {
				ws.CloseNow()
			}
			require.Error(t, err)
			require.NotNil(t, resp)
			require.Equal(t, http.StatusForbidden, resp.StatusCode)
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			var body struct {
				Error struct{ Code, Message string }
			}
			require.NoError(t, json.Unmarshal(raw, &body), "%s", raw)
			require.Equal(t, "forbidden", body.Error.Code)
			b.requireNodeWorks(t)
		})
	}
}

func TestWSSubprotocol(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.DialWS(t, b.alice.Token)
	require.Equal(t, "switchboard.v1", c.Conn.Subprotocol())
	c.Ready()
}

func TestWSAuthFrameWithResume(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	other := b.s.CreateRoom(t, b.alice, "private")
	for i := 1; i <= 3; i++ {
		b.post(t, b.alice, b.room, fmt.Sprintf("room message %d", i))
	}
	for i := 1; i <= 2; i++ {
		b.post(t, b.alice, other, fmt.Sprintf("other message %d", i))
	}

	c := b.s.DialWSWith(t, http.Header{})
	c.Send(map[string]any{"type": "auth", "token": b.alice.Token, "resume": map[string]int64{b.room: 1}})
	ready := c.Ready()
	require.Equal(t, b.alice.ID, ready["user"].(map[string]any)["id"])
	require.NotEmpty(t, ready["session_id"])
	require.Len(t, ready["rooms"], 2)

	// b.room resumes after seq 1; the other room, not named in resume,
	// starts from the delivery cursor (nothing delivered yet).
	got := map[string][]int64{}
	for len(got[b.room])+len(got[other]) < 4 {
		obj := c.NextOf("message", "subscribed")
		m := obj["message"].(map[string]any)
		got[m["room_id"].(string)] = append(got[m["room_id"].(string)], apitest.MessageSeq(obj))
	}
	require.Equal(t, []int64{2, 3}, got[b.room])
	require.Equal(t, []int64{1, 2}, got[other])

	c.Send(map[string]any{"type": "send", "id": "live", "room": b.room, "body": "after resume"})
	ack := c.NextOf("ack", "message")
	require.Equal(t, "live", ack["id"])
	require.EqualValues(t, 4, ack["message"].(map[string]any)["seq"])
}

func TestWSRateLimit(t *testing.T) {
	t.Parallel()

	// A bucket that refills one token every 20 s: the test's sends all land
	// within one refill, so exactly the burst gets through.
	tune := func(c *hub.Config) {
		c.RateLimit = 0.05
		c.RateBurst = 20
	}

	t.Run("BurstOver", func(t *testing.T) {
		t.Parallel()
		b := setupInput(t, tune)
		c := b.s.DialWS(t, b.alice.Token)
		c.Ready()
		for i := range 30 {
			c.Send(map[string]any{"type": "send", "id": fmt.Sprintf("s%d", i), "room": b.room, "body": fmt.Sprintf("burst %d", i)})
		}
		var acked []string
		limited := 0
		for len(acked)+limited < 30 {
			obj := nextExcept(t, c, "subscribed", "message")
			if obj["type"] == "ack" {
				acked = append(acked, obj["message"].(map[string]any)["body"].(string))
				continue
			}
			require.Equal(t, "rate_limited", obj["code"], "%v", obj)
			require.NotNil(t, obj["id"])
			retry, ok := obj["retry_after_ms"].(float64)
			require.True(t, ok, "retry_after_ms missing: %v", obj)
			require.Greater(t, retry, float64(0))
			limited++
		}
		require.Len(t, acked, 20)
		require.Equal(t, 10, limited)
		require.Equal(t, acked, b.history(t, b.alice, b.room))

		// Rate-limited, not closed: other requests still work.
		c.Send(map[string]any{"type": "ping", "id": "still-open"})
		require.Equal(t, "still-open", c.NextOf("pong", "message")["id"])
		b.requireNodeWorks(t)
	})

	t.Run("FarOverCloses", func(t *testing.T) {
		t.Parallel()
		b := setupInput(t, tune)
		c := b.s.DialWS(t, b.alice.Token)
		c.Ready()
		c.NextOf("subscribed")
		for i := range 200 {
			frame, _ := json.Marshal(map[string]any{"type": "send", "id": fmt.Sprintf("s%d", i), "room": b.room, "body": fmt.Sprintf("flood %d", i)})
			if writeFrame(c, websocket.MessageText, frame) != nil {
				break // closed under us, as it should be
			}
		}
		objs, code := apitest.DrainUntilClosed(t, c, 5*time.Second)
		acks, limited := 0, 0
		for _, obj := range objs {
			switch obj["type"] {
			case "ack":
				acks++
			case "error":
				require.Equal(t, "rate_limited", obj["code"])
				limited++
			default:
				require.Equal(t, "message", obj["type"])
			}
		}
		// The close drops answers still queued, so the last acks and errors
		// may be missing; the store has exactly the burst.
		require.LessOrEqual(t, acks, 20)
		require.LessOrEqual(t, limited, 50)
		require.Equal(t, websocket.StatusPolicyViolation, code)
		require.Len(t, b.history(t, b.alice, b.room), 20)
		b.requireNodeWorks(t)
	})
}

// bigBody is a message body of the largest size SPEC §5 allows, in bytes:
// 4000 four-byte characters, about 16 KB per message frame.
var bigBody = strings.Repeat("\U0001F600", 4000)

func TestWSSlowConsumer(t *testing.T) {
	t.Parallel()
	// 64 KiB holds four maximal messages. (A queue smaller than one frame,
	// such as 4 KiB, would close every connection on its first big message.)
	b := setupInput(t, func(c *hub.Config) { c.QueueBytes = 64 << 10 })
	slowUser, fastUser := b.bob, b.s.Register(t, "fast")
	b.s.AddMember(t, b.alice, b.room, fastUser)

	// The slow client reads up to its subscription and then nothing until
	// the end: the socket buffers fill (a few MB on loopback), then its
	// send queue.
	slow := b.s.DialWS(t, slowUser.Token)
	slow.Ready()
	slow.NextOf("subscribed")
	fast := b.s.DialWS(t, fastUser.Token)
	fast.Ready()
	fast.NextOf("subscribed")

	seqs := make(chan int64, 4096)
	readErr := make(chan error, 1)
	go func() {
		for {
			obj, err := fast.NextErr(30 * time.Second)
			if err != nil {
				readErr <- err
				return
			}
			if obj["type"] == "message" {
				seqs <- apitest.MessageSeq(obj)
			}
		}
	}()

	// Post until the node reports the slow consumer closed, then a few more.
	posted, extra := int64(0), -1
	for extra != 0 {
		require.Less(t, posted, int64(2000), "the slow reader was never closed")
		posted = b.post(t, b.alice, b.room, bigBody)
		switch {
		case extra > 0:
			extra--
		case posted%10 == 0 && slowConsumerDrops(t, b.s) > 0:
			extra = 5
		}
	}
	t.Logf("slow consumer closed after at most %d messages of %d bytes", posted-5, len(bigBody))

	for want := int64(1); want <= posted; want++ {
		select {
		case seq := <-seqs:
			require.Equal(t, want, seq)
		case err := <-readErr:
			t.Fatalf("fast reader failed after seq %d: %v", want-1, err)
		case <-time.After(15 * time.Second):
			t.Fatalf("fast reader got nothing after seq %d", want-1)
		}
	}

	// The slow reader finds the connection closed once it reads what the
	// kernel still buffers: 1013 if the close frame got out, or just gone.
	objs, code := apitest.DrainUntilClosed(t, slow, 10*time.Second)
	var last int64
	for _, obj := range objs {
		if obj["type"] == "message" {
			require.Equal(t, last+1, apitest.MessageSeq(obj))
			last = apitest.MessageSeq(obj)
		}
	}
	require.Less(t, last, posted)
	require.Contains(t, []websocket.StatusCode{websocket.StatusTryAgainLater, -1}, code)
	t.Logf("slow reader got %d of %d messages, close code %d", last, posted, code)
	b.requireNodeWorks(t)
}

// slowConsumerDrops reads switchboard_ws_dropped_total{reason="slow_consumer"}.
func slowConsumerDrops(t *testing.T, s *apitest.Node) int {
	t.Helper()
	r := s.Do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, line := range strings.Split(string(r.Raw), "\n") {
		if v, ok := strings.CutPrefix(line, `switchboard_ws_dropped_total{reason="slow_consumer"} `); ok {
			var n int
			_, err := fmt.Sscan(v, &n)
			require.NoError(t, err)
			return n
		}
	}
	return 0
}

// TestWSManyLargeMessages: 400 maximal messages are 6.4 MB, more than the
// default 1 MiB send queue and the socket buffers together. A member who
// was away while they were posted still gets all of them on the next
// connection, even if it reads nothing for the first second (SPEC §6:
// offline delivery; a client "resumes later"), and a history request for
// 200 of them is answered, not closed.
func TestWSManyLargeMessages(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	const n = 400
	store := b.s.Store
	for range n {
		_, _, err := store.SaveMessage(t.Context(), chat.NewMessage{RoomID: b.room, SenderID: b.alice.ID, Body: bigBody, Source: chat.SourceAPI})
		require.NoError(t, err)
	}

	t.Run("CatchUpOnConnect", func(t *testing.T) {
		t.Parallel()
		c := b.s.DialWS(t, b.bob.Token)
		c.Ready()
		// A client on a slow link: nothing is read for a moment, so the
		// catch-up has to wait for the connection instead of racing it.
		time.Sleep(time.Second)
		for want := int64(1); want <= n; want++ {
			obj, err := c.NextErr(10 * time.Second)
			require.NoError(t, err, "after seq %d", want-1)
			if obj["type"] == "subscribed" {
				want--
				continue
			}
			require.Equal(t, "message", obj["type"])
			require.Equal(t, want, apitest.MessageSeq(obj))
		}
	})
	t.Run("History", func(t *testing.T) {
		t.Parallel()
		// Resume at the end, so that only the history answer is big.
		c := b.s.DialWSWith(t, http.Header{})
		c.Send(map[string]any{"type": "auth", "token": b.alice.Token, "resume": map[string]int64{b.room: n}})
		c.Ready()
		c.NextOf("subscribed")
		c.Send(map[string]any{"type": "history", "id": "h1", "room": b.room, "limit": 200})
		obj, err := c.NextErr(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, "history", obj["type"])
		require.Equal(t, "h1", obj["id"])
		require.Len(t, obj["messages"], 200)
	})
}

func TestWSTyping(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	alice := b.s.DialWS(t, b.alice.Token)
	alice.Ready()
	alice.NextOf("subscribed")
	bob := b.s.DialWS(t, b.bob.Token)
	bob.Ready()
	bob.NextOf("subscribed")

	alice.Send(map[string]any{"type": "typing", "room": b.room})
	typing := bob.NextOf("typing")
	require.Equal(t, b.room, typing["room"])
	user := typing["user"].(map[string]any)
	require.Equal(t, b.alice.ID, user["id"])
	require.Equal(t, b.alice.Username, user["username"])
	require.Contains(t, user, "display_name")

	// The typer gets no typing event of her own: the ping after it is
	// answered with nothing in between.
	alice.Send(map[string]any{"type": "ping", "id": "after-typing"})
	require.Equal(t, "after-typing", alice.NextOf("pong")["id"])

	require.Empty(t, b.history(t, b.alice, b.room))
	r := b.s.Do(t, "GET", "/api/v1/rooms", b.bob.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	for _, room := range r.Body["rooms"].([]any) {
		require.EqualValues(t, 0, room.(map[string]any)["last_seq"])
	}
	b.requireNodeWorks(t)
}

func TestWSPing(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name  string
		frame string
		want  any
	}{
		{name: "WithID", frame: `{"type":"ping","id":"p-1"}`, want: "p-1"},
		{name: "WithoutID", frame: `{"type":"ping"}`, want: nil},
		{name: "UnicodeID", frame: `{"type":"ping","id":"κόσμε-😀"}`, want: "κόσμε-😀"},
	}
	b := setupInput(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := b.s.DialWS(t, b.alice.Token)
			c.Ready()
			c.SendRaw([]byte(tt.frame))
			pong := c.NextOf("pong", "subscribed")
			require.Contains(t, pong, "id")
			require.Equal(t, tt.want, pong["id"])
		})
	}
}

func TestWSRead(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	dave := b.s.Register(t, "dave")
	b.s.AddMember(t, b.alice, b.room, dave)
	for i := 1; i <= 3; i++ {
		b.post(t, b.alice, b.room, fmt.Sprintf("unread %d", i))
	}
	roomOf := func(u apitest.User) map[string]any {
		t.Helper()
		r := b.s.Do(t, "GET", "/api/v1/rooms", u.Token, nil)
		require.Equal(t, http.StatusOK, r.Status)
		for _, room := range r.Body["rooms"].([]any) {
			if room.(map[string]any)["id"] == b.room {
				return room.(map[string]any)
			}
		}
		t.Fatalf("room %s not listed", b.room)
		return nil
	}
	before := roomOf(b.bob)
	require.EqualValues(t, 3, before["last_seq"])
	require.EqualValues(t, 0, before["last_read_seq"])
	require.EqualValues(t, 3, before["unread"])

	c := b.s.DialWS(t, b.bob.Token)
	c.Ready()
	c.Send(map[string]any{"type": "read", "id": "r1", "room": b.room, "seq": 2})
	// read has no answer; the pong after it shows it was handled.
	c.Send(map[string]any{"type": "ping", "id": "after-read"})
	require.Equal(t, "after-read", c.NextOf("pong", "subscribed", "message")["id"])

	after := roomOf(b.bob)
	require.EqualValues(t, 2, after["last_read_seq"])
	require.EqualValues(t, 1, after["unread"])
	// Only bob's cursor moved.
	require.EqualValues(t, 3, roomOf(dave)["unread"])

	// A read cursor never goes back, and never past the room's end.
	c.Send(map[string]any{"type": "read", "room": b.room, "seq": 1})
	c.Send(map[string]any{"type": "ping", "id": "after-read-back"})
	require.Equal(t, "after-read-back", c.NextOf("pong", "message")["id"])
	require.EqualValues(t, 2, roomOf(b.bob)["last_read_seq"])
	c.Send(map[string]any{"type": "read", "room": b.room, "seq": 99})
	c.Send(map[string]any{"type": "ping", "id": "after-read-far"})
	require.Equal(t, "after-read-far", c.NextOf("pong", "message")["id"])
	far := roomOf(b.bob)
	require.EqualValues(t, 3, far["last_read_seq"])
	require.EqualValues(t, 0, far["unread"])
	b.requireNodeWorks(t)
}

// TestWSJSONSurrogates: a send with a lone surrogate escape is answered
// error bad_request with its id, stores nothing, and the connection goes on
// working (it is not a 1007 close: the bytes are valid UTF-8); a pair is
// stored as the emoji.
func TestWSJSONSurrogates(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.DialWS(t, b.alice.Token)
	c.Ready()

	for i, body := range []string{`\ud800`, `x\udbff`, `\udc00y`, `\ud83d\u0041`} {
		id := string(rune('a' + i))
		c.SendRaw([]byte(`{"type":"send","id":"` + id + `","room":"` + b.room + `","body":"` + body + `"}`))
		e := c.NextOf("error", "subscribed")
		require.Equal(t, "bad_request", e["code"], "%v", e)
		require.Equal(t, id, e["id"], "%v", e)
		require.NotEmpty(t, e["message"])
	}
	require.Empty(t, b.history(t, b.alice, b.room), "nothing stored")

	c.SendRaw([]byte(`{"type":"send","id":"pair","room":"` + b.room + `","body":"smile \ud83d\ude00"}`))
	ack := c.NextOf("ack", "message", "subscribed")
	require.Equal(t, "pair", ack["id"])
	require.Equal(t, "smile 😀", ack["message"].(map[string]any)["body"])
	require.Equal(t, []string{"smile 😀"}, b.history(t, b.alice, b.room))
	b.requireNodeWorks(t)
}

// TestWSInvisibleBody: the same over WebSocket: error bad_request with the
// request's id, nothing stored, the connection still serves.
func TestWSInvisibleBody(t *testing.T) {
	t.Parallel()
	b := setupInput(t, nil)
	c := b.s.DialWS(t, b.alice.Token)
	c.Ready()
	for i, body := range []string{"\u200b", "\ufeff\u200d", " \u00ad "} {
		id := fmt.Sprintf("inv-%d", i)
		c.Send(map[string]any{"type": "send", "id": id, "room": b.room, "body": body})
		e := c.NextOf("error", "subscribed")
		require.Equal(t, "bad_request", e["code"], "%v", e)
		require.Equal(t, id, e["id"])
	}
	require.Empty(t, b.history(t, b.alice, b.room), "nothing stored")
	require.Equal(t, "visible", apitest.SendWS(t, c, b.room, "visible")["body"])
	b.requireNodeWorks(t)
}
