package hub

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/chat"
)

// Subprotocol is the WebSocket subprotocol of SPEC §6.
const Subprotocol = "switchboard.v1"

// ServeHTTP is the /ws endpoint: it checks Origin before upgrading, then
// authenticates the connection, subscribes it, and hands it to a fresh
// reader goroutine.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !h.originAllowed(origin) {
		writeHTTPError(w, http.StatusForbidden, chat.CodeForbidden, "origin not allowed")
		return
	}
	h.mu.RLock()
	closing := h.closing
	h.mu.RUnlock()
	if closing {
		writeHTTPError(w, http.StatusServiceUnavailable, chat.CodeUnavailable, "server is shutting down")
		return
	}
	// Read what we need from the request before Accept: after it, the
	// request's context must not be used.
	headerToken, hasHeader := bearer(r)
	sb := &smallBuffers{ResponseWriter: w}
	ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{
		Subprotocols:       []string{Subprotocol},
		InsecureSkipVerify: true, // Origin was checked above, against our own allow-list
		// permessage-deflate costs each connection a compressor's state;
		// chat frames are small.
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return // Accept has answered the request
	}
	ws.SetReadLimit(h.cfg.MaxFrameBytes)

	h.conns.Add(1)
	handedOff := false
	defer func() {
		if !handedOff {
			ws.CloseNow() // after a close handshake, or a client gone before auth
			h.conns.Done()
		}
	}()

	session, resume, ok := h.authenticate(ws, headerToken, hasHeader)
	if !ok {
		return
	}
	c := h.newConn(ws, sb.conn, session)
	if !h.register(c) {
		c.cancel()
		_ = ws.Close(closeGoingAway, "server shutting down")
		return
	}
	c.schedulePing()
	if err := h.start(c, resume); err != nil {
		c.logger().Warn("connection setup failed", slog.Any("error", err))
		c.enqueueFrame(encode(newErrorFrame(nil, err)))
		c.closeWith(closeTryLater, "could not load rooms")
		<-c.ctx.Done()
		c.finish()
		h.unregister(c)
		return
	}
	// Read in a fresh goroutine and let this one end: its stack grew deep
	// during the upgrade, authentication and the store calls of start, and
	// every idle connection would hold it. After the hijack, net/http has
	// nothing more to do with the connection.
	handedOff = true
	go c.run()
}

// run reads an authenticated connection until it ends, then releases it.
func (c *conn) run() {
	defer c.h.conns.Done()
	defer c.h.unregister(c)
	defer c.finish()
	err := c.serve()
	if err != nil && !isNormalClose(err) && c.ctx.Err() == nil {
		c.logger().Debug("connection ended", slog.Any("error", err))
	}
}

// authenticate takes the session from the upgrade's Authorization header or
// from an auth frame within AuthTimeout. A refused token gets an
// unauthorized error and close 4401; a missing one, close 4401.
func (h *Hub) authenticate(ws *websocket.Conn, headerToken string, hasHeader bool) (chat.Session, map[string]int64, bool) {
	ctx, cancel := context.WithTimeout(h.unauthed, h.cfg.AuthTimeout)
	defer cancel()
	token, resume := headerToken, map[string]int64(nil)
	if !hasHeader {
		for {
			// coder/websocket drops the TCP connection, with no close frame,
			// when a read's context ends; so read without a deadline and
			// close from a timer instead.
			stop := context.AfterFunc(ctx, func() {
				if h.unauthed.Err() != nil {
					_ = ws.Close(closeGoingAway, "server shutting down")
					return
				}
				_ = ws.Close(closeUnauthorized, "authentication timed out")
			})
			typ, data, err := ws.Read(context.Background())
			if !stop() || err != nil {
				return chat.Session{}, nil, false
			}
			f, ok := h.readClientFrame(ctx, ws, typ, data)
			if !ok {
				return chat.Session{}, nil, false
			}
			if f.Type == "auth" && f.Token != "" {
				token, resume = f.Token, f.Resume
				break
			}
			h.writeDirect(ctx, ws, encode(errorFrame{Type: "error", ID: f.ID, Code: string(chat.CodeUnauthorized),
				Message: "authenticate first: send {\"type\":\"auth\",\"token\":...}"}))
			_ = ws.Close(closeUnauthorized, "not authenticated")
			return chat.Session{}, nil, false
		}
	}
	session, err := h.cfg.Auth.Authenticate(ctx, token)
	if err != nil {
		h.writeDirect(ctx, ws, encode(newErrorFrame(nil, err)))
		code := closeUnauthorized
		if chat.ErrorOf(err).Code != chat.CodeUnauthorized {
			code = closeTryLater
		}
		_ = ws.Close(code, "authentication failed")
		return chat.Session{}, nil, false
	}
	return session, resume, true
}

// readClientFrame applies the frame rules that close the connection: binary
// frames (1003) and invalid UTF-8 (1007). Before auth, undecodable frames
// are answered bad_request and closed 4401.
func (h *Hub) readClientFrame(ctx context.Context, ws *websocket.Conn, typ websocket.MessageType, data []byte) (clientFrame, bool) {
	if typ != websocket.MessageText {
		_ = ws.Close(closeUnsupported, "binary frames are not supported")
		return clientFrame{}, false
	}
	f, err := decodeFrame(data)
	if errors.Is(err, errInvalidUTF8) {
		_ = ws.Close(closeInvalidUTF8, "text frame is not valid UTF-8")
		return clientFrame{}, false
	}
	if err != nil {
		h.writeDirect(ctx, ws, encode(newErrorFrame(f.ID, err)))
		_ = ws.Close(closeUnauthorized, "not authenticated")
		return clientFrame{}, false
	}
	return f, true
}

// writeDirect writes one frame before the connection's writer exists.
func (h *Hub) writeDirect(ctx context.Context, ws *websocket.Conn, frame []byte) {
	wctx, cancel := context.WithTimeout(ctx, h.cfg.WriteTimeout)
	defer cancel()
	_ = ws.Write(wctx, websocket.MessageText, frame)
}

// start sends the ready frame and subscribes c to each of the user's rooms
// from the client's resume seq or the stored delivery cursor.
func (h *Hub) start(c *conn, resume map[string]int64) error {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	rooms, err := h.cfg.Store.RoomsOf(ctx, c.user.ID)
	if err != nil {
		return err
	}
	cursors, err := h.cfg.Store.Cursors(ctx, c.user.ID)
	if err != nil {
		return err
	}
	if rooms == nil {
		rooms = []chat.Room{}
	}
	c.enqueueFrame(encode(readyFrame{Type: "ready", User: c.user, SessionID: c.sessionID, Rooms: rooms}))
	ids := make([]string, len(cursors))
	for i, cur := range cursors {
		ids[i] = cur.RoomID
	}
	h.announcePresence(c, ids, true)
	for _, cur := range cursors {
		from := cur.DeliveredSeq
		if seq, ok := resume[cur.RoomID]; ok && seq >= 0 {
			from = seq
		}
		if err := h.subscribe(ctx, c, cur.RoomID, min(from, cur.LastSeq), nil); err != nil {
			return err
		}
	}
	return nil
}

// serve is the read loop of an authenticated connection. It reads without
// a context (coder/websocket would hang a callback on it for every read):
// closing the connection ends the read.
func (c *conn) serve() error {
	for {
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			c.closeAndWait(closeUnsupported, "binary frames are not supported")
			return nil
		}
		f, err := decodeFrame(data)
		if errors.Is(err, errInvalidUTF8) {
			c.closeAndWait(closeInvalidUTF8, "text frame is not valid UTF-8")
			return nil
		}
		if err != nil {
			c.badFrames++
			if c.badFrames >= maxBadFrames {
				c.closeAndWait(closePolicy, "too many invalid frames")
				return nil
			}
			c.enqueueFrame(encode(newErrorFrame(f.ID, err)))
			continue
		}
		c.badFrames = 0
		c.handle(f)
	}
}

// handle answers one valid frame. Errors go back to the client as error
// frames; none of them closes the connection except persistent abuse.
func (c *conn) handle(f clientFrame) {
	h := c.h
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	fail := func(err error) {
		if chat.ErrorOf(err).Code == chat.CodeInternal {
			c.logger().Error("request failed", slog.String("type", f.Type), slog.Any("error", err))
		}
		c.enqueueFrame(encode(newErrorFrame(f.ID, err)))
	}
	switch f.Type {
	case "send":
		if res := c.sendLimiter().Reserve(); res.Delay() > 0 {
			res.Cancel()
			h.cfg.Metrics.RateLimited.Inc()
			c.rateRefused++
			if c.rateRefused >= maxRateRefused {
				c.closeWith(closePolicy, "far over the rate limit")
				return
			}
			retry := int64(c.retryAfter() / time.Millisecond)
			c.enqueueFrame(encode(errorFrame{Type: "error", ID: f.ID, Code: string(chat.CodeRateLimited),
				Message: "sending too fast", RetryAfterMs: &retry}))
			return
		}
		c.rateRefused = 0
		nm := chat.NewMessage{RoomID: *f.Room, SenderID: c.user.ID, Body: *f.Body, Source: chat.SourceWeb}
		if f.ParentID != nil {
			nm.ParentID = *f.ParentID
		}
		if f.ClientID != nil {
			nm.ClientID = *f.ClientID
		}
		msg, _, err := h.Post(ctx, nm)
		if err != nil {
			fail(err)
			return
		}
		c.enqueueFrame(encode(ackFrame{Type: "ack", ID: f.ID, Message: &msg}))
	case "subscribe":
		if err := h.cfg.Store.CheckMember(ctx, c.user.ID, *f.Room); err != nil {
			fail(err)
			return
		}
		from := int64(-1)
		if f.AfterSeq != nil {
			from = max(*f.AfterSeq, 0)
		} else if c.subscribedTo(*f.Room) {
			c.enqueueFrame(encode(subscribedFrame{Type: "subscribed", ID: f.ID, Room: *f.Room, LastSeq: c.lastSeq(*f.Room)}))
			return
		} else {
			cursors, err := h.cfg.Store.Cursors(ctx, c.user.ID)
			if err != nil {
				fail(err)
				return
			}
			for _, cur := range cursors {
				if cur.RoomID == *f.Room {
					from = cur.DeliveredSeq
				}
			}
		}
		if err := h.subscribe(ctx, c, *f.Room, max(from, 0), f.ID); err != nil {
			fail(err)
		}
	case "unsubscribe":
		h.unsubscribe(c, *f.Room)
		c.enqueueFrame(encode(unsubscribedFrame{Type: "unsubscribed", ID: f.ID, Room: *f.Room}))
	case "history":
		if err := h.cfg.Store.CheckMember(ctx, c.user.ID, *f.Room); err != nil {
			fail(err)
			return
		}
		limit, before := defaultHistoryLimit, int64(1<<62)
		if f.Limit != nil {
			limit = *f.Limit
		}
		if f.BeforeSeq != nil {
			before = *f.BeforeSeq
		}
		msgs, err := h.cfg.Store.MessagesBefore(ctx, *f.Room, before, limit)
		if err != nil {
			fail(err)
			return
		}
		if msgs == nil {
			msgs = []chat.Message{}
		}
		frame := encode(historyFrame{Type: "history", ID: f.ID, Room: *f.Room, Messages: msgs})
		if c.waitRoom(len(frame)) {
			c.enqueueFrame(frame)
		}
	case "typing":
		if !c.subscribedTo(*f.Room) {
			fail(chat.Errorf(chat.CodeForbidden, "not subscribed to this room"))
			return
		}
		if !c.typingLimiter().Allow() {
			return // typing is best effort: over its budget it is dropped
		}
		h.publish(Event{Room: *f.Room, From: c.user.ID, Frame: encode(typingFrame{Type: "typing", Room: *f.Room, User: c.user})})
	case "read":
		if _, err := h.cfg.Store.MarkRead(ctx, c.user.ID, *f.Room, *f.Seq); err != nil {
			fail(err)
		}
	case "ping":
		c.enqueueFrame(encode(pongFrame{Type: "pong", ID: f.ID}))
	case "auth":
		fail(chat.Errorf(chat.CodeBadRequest, "already authenticated"))
	}
}

// retryAfter is how long until the send bucket has a token again.
func (c *conn) retryAfter() time.Duration {
	res := c.sendLimiter().Reserve()
	defer res.Cancel()
	return max(res.Delay(), time.Millisecond)
}

func (c *conn) lastSeq(roomID string) int64 {
	r := c.room(roomID)
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeq
}

func (h *Hub) originAllowed(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	got := strings.ToLower(u.Scheme + "://" + u.Host)
	for _, o := range h.cfg.AllowedOrigins {
		if strings.ToLower(strings.TrimRight(o, "/")) == got {
			return true
		}
	}
	return false
}

func bearer(r *http.Request) (string, bool) {
	v := r.Header.Get("Authorization")
	if v == "" {
		return "", false
	}
	// Anything but "Bearer <token>" is kept as is and refused as a token.
	return strings.TrimSpace(strings.TrimPrefix(v, "Bearer ")), true
}

func writeHTTPError(w http.ResponseWriter, status int, code chat.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(encode(map[string]any{"error": map[string]string{"code": string(code), "message": msg}}))
}
