package hub

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-chat/switchboard/chat"
)

// This file is the transport: the upgrade, authentication, the read loop.
// What each frame means is protocol.go's.

// Subprotocol is the WebSocket subprotocol of SPEC §6.
const Subprotocol = "switchboard.v1"

// ServeHTTP is the /ws endpoint: it checks Origin and the client's count of
// unauthenticated connections before upgrading, then authenticates the
// connection, subscribes it, and hands it to a fresh reader goroutine.
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
	ip := h.clientIP(r)
	if !h.unauthed.acquire(ip, h.cfg.MaxUnauthedPerIP) {
		w.Header().Set("Retry-After", "1")
		writeHTTPError(w, http.StatusTooManyRequests, chat.CodeRateLimited, "too many connections from this address are authenticating")
		return
	}
	authing := true
	defer func() {
		if authing {
			h.unauthed.release(ip)
		}
	}()
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
	h.unauthed.release(ip)
	authing = false
	if !ok {
		return
	}
	c := h.newConn(ws, sb.conn, sb.writer, session)
	if !h.register(c) {
		c.cancel()
		_ = ws.Close(closeGoingAway, "server shutting down")
		return
	}
	c.schedulePing()
	if err := h.start(c, resume); err != nil {
		code, reason := closeTryLater, "could not load rooms"
		if errors.Is(err, errTooManyConns) {
			code, reason = closePolicy, "too many connections"
		} else {
			c.logger().WarnContext(c.ctx, "connection setup failed", slog.Any("error", err))
		}
		c.closeWithNotice(encode(newErrorFrame(nil, err)), code, reason)
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
		c.logger().DebugContext(c.ctx, "connection ended", slog.Any("error", err))
	}
}

// authenticate takes the session from the upgrade's Authorization header or
// from an auth frame within AuthTimeout. A refused token gets an
// unauthorized error and close 4401; a missing one, close 4401.
func (h *Hub) authenticate(ws *websocket.Conn, headerToken string, hasHeader bool) (chat.Session, map[string]int64, bool) {
	ctx, cancel := context.WithTimeout(h.unauthed.ctx, h.cfg.AuthTimeout)
	defer cancel()
	token, resume := headerToken, map[string]int64(nil)
	if !hasHeader {
		// coder/websocket drops the TCP connection, with no close frame,
		// when a read's context ends; so read without a deadline and close
		// from a timer instead.
		stop := context.AfterFunc(ctx, func() {
			if h.unauthed.ctx.Err() != nil {
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
		if f.Type != "auth" {
			h.writeDirect(ctx, ws, encode(errorFrame{Type: "error", ID: f.ID, Code: string(chat.CodeUnauthorized),
				Message: "authenticate first: send {\"type\":\"auth\",\"token\":...}"}))
			_ = ws.Close(closeUnauthorized, "not authenticated")
			return chat.Session{}, nil, false
		}
		token, resume = f.Token, f.Resume
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
			if c.badFrame() {
				c.closeAndWait(closePolicy, "too many invalid frames")
				return nil
			}
			c.enqueueFrame(encode(newErrorFrame(f.ID, err)))
			continue
		}
		if !c.handle(f) {
			<-c.ctx.Done()
			return nil
		}
	}
}

// ipCounter counts, per client IP, the connections of this node that have
// not authenticated yet (SPEC §6: at most 50 per IP). Its ctx ends when
// Shutdown begins, which closes those connections at once.
type ipCounter struct {
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	n      map[string]int
}

// acquire counts one more connection of ip unless it has limit already.
func (c *ipCounter) acquire(ip string, limit int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip] >= limit {
		return false
	}
	c.n[ip]++
	return true
}

func (c *ipCounter) release(ip string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[ip]--; c.n[ip] <= 0 {
		delete(c.n, ip)
	}
}

func (h *Hub) clientIP(r *http.Request) string {
	if h.cfg.ClientIP != nil {
		return h.cfg.ClientIP(r)
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
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

// start sends the ready frame and subscribes c to each of the user's rooms
// from the client's resume seq or the stored delivery cursor. Nothing is
// written before the connection is in every room's subscriber list and
// every room's broker subscription stands, so that what others publish
// after ready (typing, presence) reaches it. It holds memberMu, so that a
// membership control arriving meanwhile applies after it.
func (h *Hub) start(c *conn, resume map[string]int64) error {
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	c.memberMu.Lock()
	defer c.memberMu.Unlock()
	c.cork()
	defer c.uncork()
	cameOnline, err := h.connectPresence(c)
	if err != nil {
		return err
	}
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
	c.enqueueFrame(encode(readyFrame{Type: "ready", User: c.user, SessionID: c.currentSession(), Rooms: rooms}))
	ids := make([]string, len(cursors))
	for i, cur := range cursors {
		ids[i] = cur.RoomID
		from := cur.DeliveredSeq
		if seq, ok := resume[cur.RoomID]; ok && seq >= 0 {
			from = seq
		}
		if err := h.subscribe(ctx, c, cur.RoomID, min(from, cur.LastSeq), nil); err != nil {
			return err
		}
	}
	if cameOnline {
		h.broadcastPresence(ctx, c.user, ids, "online")
	}
	return nil
}
