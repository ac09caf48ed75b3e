package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// subprotocol is the WebSocket subprotocol of SPEC §6.
const subprotocol = "switchboard.v1"

// password is the password of every account the load test registers.
const password = "loadtest password"

// node is one Switchboard server the load test drives, by its base URL
// (http://127.0.0.1:port).
type node struct {
	base string
	http *http.Client
}

func newNode(base string) *node {
	return &node{base: strings.TrimRight(base, "/"), http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			// Keep-alive connections for every virtual user, so that reads
			// do not run through the ephemeral ports.
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		},
	}}
}

// apiError is an HTTP answer other than the expected one.
type apiError struct {
	Status int
	Body   string
}

func (e *apiError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body) }

// do sends a JSON request and decodes a JSON answer into out when the status
// is want; any other status is an *apiError.
func (n *node) do(ctx context.Context, method, path, token string, body, out any, want ...int) error {
	return n.doHeader(ctx, nil, method, path, token, body, out, want...)
}

// doHeader is do with extra request headers.
func (n *node) doHeader(ctx context.Context, header http.Header, method, path, token string, body, out any, want ...int) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.base+path, rd)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	ok := len(want) == 0 && resp.StatusCode/100 == 2
	for _, w := range want {
		ok = ok || resp.StatusCode == w
	}
	if !ok {
		return &apiError{Status: resp.StatusCode, Body: strings.TrimSpace(string(raw))}
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

// status returns the HTTP status of err, or 0.
func status(err error) int {
	var e *apiError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// account is a registered user, its access token, and the client address
// it comes from (sent as X-Forwarded-For when it registers and connects).
type account struct {
	ID, Username, Token string
	IP                  string
}

// clientIPs numbers the client addresses registrations come from.
var clientIPs atomic.Uint32

// nextClientIP is a fresh address for one more client, 10.0.0.1, 10.0.0.2,
// …: each registering account comes from its own, as real users do, so
// that the per-IP auth limit (60 a minute by default) sees each person
// register once. The servers must believe X-Forwarded-For from the load
// test (--trusted-proxies 127.0.0.1/32; the servers the load test starts
// do).
func nextClientIP() string {
	n := clientIPs.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", byte(n>>16), byte(n>>8), byte(n))
}

// register creates an account through POST /api/v1/auth/register, from a
// client address of its own.
func (n *node) register(ctx context.Context, username string) (account, error) {
	var resp struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		AccessToken string `json:"access_token"`
	}
	ip := nextClientIP()
	err := n.doFrom(ctx, ip, "POST", "/api/v1/auth/register", "", map[string]string{"username": username, "password": password}, &resp)
	if status(err) == http.StatusTooManyRequests {
		return account{}, fmt.Errorf("register %s: %w (the per-IP auth limit: start the servers with --trusted-proxies 127.0.0.1/32 so that each registration counts for its own X-Forwarded-For address)", username, err)
	}
	if err != nil {
		return account{}, fmt.Errorf("register %s: %w", username, err)
	}
	return account{ID: resp.User.ID, Username: username, Token: resp.AccessToken, IP: ip}, nil
}

// registerMany registers count accounts named prefix-0, prefix-1, ... with
// a few at a time (each costs the server one bcrypt hash).
func (n *node) registerMany(ctx context.Context, prefix string, count int) ([]account, error) {
	accounts := make([]account, count)
	errs := make([]error, count)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range accounts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			accounts[i], errs[i] = n.register(ctx, fmt.Sprintf("%s-%d", prefix, i))
		})
	}
	wg.Wait()
	return accounts, errors.Join(errs...)
}

// createRoom creates a public room owned by owner and returns its id.
func (n *node) createRoom(ctx context.Context, owner account, name string) (string, error) {
	var room struct {
		ID string `json:"id"`
	}
	err := n.do(ctx, "POST", "/api/v1/rooms", owner.Token, map[string]string{"name": name, "visibility": "public"}, &room)
	if err != nil {
		return "", fmt.Errorf("create room %s: %w", name, err)
	}
	return room.ID, nil
}

// joinAll makes every account join room.
func (n *node) joinAll(ctx context.Context, room string, accounts []account) error {
	sem := make(chan struct{}, 16)
	errs := make([]error, len(accounts))
	var wg sync.WaitGroup
	for i, a := range accounts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = n.do(ctx, "POST", "/api/v1/rooms/"+room+"/join", a.Token, nil, nil)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// dialer opens WebSocket connections to the nodes, from one of several
// loopback source addresses (127.0.0.x) so that more connections than one
// address's ephemeral ports can be held.
type dialer struct {
	clients []*http.Client
}

func newDialer(sourceIPs int) *dialer {
	d := &dialer{}
	for i := range max(sourceIPs, 1) {
		nd := &net.Dialer{Timeout: 10 * time.Second}
		if sourceIPs > 1 {
			nd.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}
		}
		d.clients = append(d.clients, &http.Client{Transport: &http.Transport{DialContext: nd.DialContext}})
	}
	return d
}

// dial opens an authenticated WebSocket to n (token in the upgrade's
// Authorization header), from source address number i.
func (d *dialer) dial(ctx context.Context, n *node, token string, i int) (*websocket.Conn, error) {
	return d.dialFrom(ctx, n, account{Token: token}, i)
}

// dialFrom opens a WebSocket of a, from its client address
// (X-Forwarded-For) when it has one: the servers cap the connections
// still authenticating per client address (50 per node).
func (d *dialer) dialFrom(ctx context.Context, n *node, a account, i int) (*websocket.Conn, error) {
	token := a.Token
	h := http.Header{}
	h.Set("Authorization", "Bearer "+token)
	if a.IP != "" {
		h.Set("X-Forwarded-For", a.IP)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.base, "http")+"/ws", &websocket.DialOptions{
		HTTPClient:      d.clients[i%len(d.clients)],
		HTTPHeader:      h,
		Subprotocols:    []string{subprotocol},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(-1)
	return ws, nil
}

// readLines reads frames until the connection ends and calls fn with each
// server object (frames hold several, separated by '\n'). The line is only
// valid during the call.
func readLines(ws *websocket.Conn, fn func(line []byte)) error {
	var buf bytes.Buffer // reused: a fresh buffer per frame cost the generator a tenth of its CPU
	for {
		_, r, err := ws.Reader(context.Background())
		if err != nil {
			return err
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return err
		}
		data := buf.Bytes()
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				fn(data)
				break
			}
			fn(data[:i])
			data = data[i+1:]
		}
	}
}

// frameType returns the type of a server object. The server writes "type"
// first in every object, so this needs no JSON decoding.
func frameType(line []byte) string {
	const prefix = `{"type":"`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return ""
	}
	rest := line[len(prefix):]
	if i := bytes.IndexByte(rest, '"'); i >= 0 {
		return string(rest[:i])
	}
	return ""
}

// messageFields extracts room_id, seq and body from a "message" object
// without decoding it as a whole: at 100,000 deliveries per second a full
// decode would cost the load generator the CPU the server needs. The
// server writes the message's id, room_id and seq before the sender and the
// body, so the first occurrence of each key is the message's own (the
// sender's strings cannot hold an unescaped quote).
func messageFields(line []byte) (room string, seq int64, body string, ok bool) {
	room, ok1 := stringField(line, `"room_id":"`)
	seqText, ok2 := rawField(line, `"seq":`)
	body, ok3 := stringField(line, `"body":"`)
	if !ok1 || !ok2 || !ok3 {
		return "", 0, "", false
	}
	seq, err := strconv.ParseInt(seqText, 10, 64)
	return room, seq, body, err == nil
}

func stringField(line []byte, key string) (string, bool) {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := line[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

func rawField(line []byte, key string) (string, bool) {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return "", false
	}
	rest := line[i+len(key):]
	j := bytes.IndexAny(rest, ",}")
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// reply is the part of an ack, error or subscribed object the load test
// reads.
type reply struct {
	Type         string  `json:"type"`
	ID           *string `json:"id"`
	Code         string  `json:"code"`
	RetryAfterMs int64   `json:"retry_after_ms"`
	Room         string  `json:"room"`
	LastSeq      int64   `json:"last_seq"`
	Message      struct {
		ID        string    `json:"id"`
		RoomID    string    `json:"room_id"`
		Seq       int64     `json:"seq"`
		CreatedAt time.Time `json:"created_at"`
	} `json:"message"`
}

// stampBody is a message body that carries its intended send time and the
// index of the connection that sends it, so that any receiver (on any
// node) can tell the end-to-end latency and whether the message is its own.
func stampBody(intended time.Time, conn int) string {
	return "lt " + strconv.FormatInt(intended.UnixNano(), 10) + " c" + strconv.Itoa(conn)
}

// bodyStamp returns the intended send time and the sending connection of a
// stampBody body (conn is -1 when the body names none).
func bodyStamp(body string) (intended time.Time, conn int, ok bool) {
	rest, found := strings.CutPrefix(body, "lt ")
	if !found {
		return time.Time{}, -1, false
	}
	ns, c, _ := strings.Cut(rest, " c")
	conn = -1
	if v, err := strconv.Atoi(c); err == nil {
		conn = v
	}
	t, err := strconv.ParseInt(ns, 10, 64)
	if err != nil {
		return time.Time{}, conn, false
	}
	return time.Unix(0, t), conn, true
}

// errorCode is the code of a failed HTTP request's error body
// ({"error":{"code":…}}), or what else went wrong.
func errorCode(err error) string {
	var e *apiError
	if !errors.As(err, &e) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return "timeout"
		}
		return "transport error"
	}
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(e.Body), &body) == nil && body.Error.Code != "" {
		return body.Error.Code
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// sendFrame encodes a send request.
func sendFrame(id, room, body, clientID string) []byte {
	raw, _ := json.Marshal(map[string]string{"type": "send", "id": id, "room": room, "body": body, "client_id": clientID})
	return raw
}
