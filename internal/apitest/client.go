package apitest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// Client makes requests and fixtures on a server under test.
type Client struct {
	// URL is the server's base URL, "http://host:port".
	URL string
	// Pool is the server's database, where Register inserts accounts.
	Pool *pgxpool.Pool
}

// Response is a decoded HTTP answer.
type Response struct {
	Status int
	Header http.Header
	Body   map[string]any // the JSON object of a JSON answer
	Raw    []byte
}

// ErrorCode is the error.code of an error answer, or "".
func (r Response) ErrorCode() string {
	e, _ := r.Body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// Do sends a request to the server with an optional body and Bearer token.
func (c *Client) Do(t testing.TB, method, path, token string, body any) Response {
	t.Helper()
	return Do(t, nil, method, c.URL+path, token, body)
}

// DoFrom is Do with extra request headers (X-Forwarded-For, say).
func (c *Client) DoFrom(t testing.TB, header http.Header, method, path, token string, body any) Response {
	t.Helper()
	return Do(t, header, method, c.URL+path, token, body)
}

// Do sends a request to any URL. A string body is sent as it is, any other
// non-nil body as JSON; header, if not nil, is added to the request.
func Do(t testing.TB, header http.Header, method, url, token string, body any) Response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	out := Response{Status: resp.StatusCode, Header: resp.Header, Raw: raw}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(raw, &out.Body), "body: %s", raw)
	}
	return out
}

// Decode decodes the raw body of r into a T.
func Decode[T any](t testing.TB, r Response) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.Raw, &v), "body: %s", r.Raw)
	return v
}

// RequireError checks an error answer: its status, its code and the SPEC
// §2 shape {"error":{"code","message"}}.
func RequireError(t testing.TB, r Response, status int, code string) {
	t.Helper()
	require.Equal(t, status, r.Status, "body: %s", r.Raw)
	require.Equal(t, code, r.ErrorCode(), "body: %s", r.Raw)
	e, _ := r.Body["error"].(map[string]any)
	require.NotEmpty(t, e["message"], "body: %s", r.Raw)
}

// RequireUTCTime checks a SPEC §2 timestamp, RFC 3339 in UTC, and returns
// it.
func RequireUTCTime(t testing.TB, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	require.NoError(t, err)
	require.True(t, strings.HasSuffix(s, "Z"), "timestamp %q is not in UTC", s)
	return ts
}

// User is an account logged in, with its token pair.
type User struct {
	ID, Username, Token, Refresh string
}

// Register makes an account with a unique name starting with prefix and
// logs it in.
func (c *Client) Register(t testing.TB, prefix string) User {
	t.Helper()
	return c.RegisterNamed(t, Unique(prefix))
}

// RegisterNamed makes the account name (which must be free), with Password,
// and logs it in through POST /api/v1/auth/login.
func (c *Client) RegisterNamed(t testing.TB, name string) User {
	t.Helper()
	_, err := c.Pool.Exec(t.Context(),
		`INSERT INTO users (username, password_hash, display_name) VALUES ($1, $2, $1)`, name, PasswordHash())
	require.NoError(t, err)
	return c.Login(t, name, Password)
}

// Login logs in and returns the account with its fresh token pair.
func (c *Client) Login(t testing.TB, username, password string) User {
	t.Helper()
	r := c.Do(t, "POST", "/api/v1/auth/login", "", map[string]any{"username": username, "password": password})
	require.Equal(t, http.StatusOK, r.Status, "login: %s", r.Raw)
	user := r.Body["user"].(map[string]any)
	return User{ID: user["id"].(string), Username: user["username"].(string),
		Token: r.Body["access_token"].(string), Refresh: r.Body["refresh_token"].(string)}
}

// Refresh is POST /api/v1/auth/refresh with u's refresh token.
func (c *Client) Refresh(t testing.TB, u User) Response {
	t.Helper()
	return c.Do(t, "POST", "/api/v1/auth/refresh", "", map[string]any{"refresh_token": u.Refresh})
}

// CreateRoom makes a room owned by u and returns its id.
func (c *Client) CreateRoom(t testing.TB, u User, visibility string) string {
	t.Helper()
	r := c.Do(t, "POST", "/api/v1/rooms", u.Token, map[string]any{"name": Unique("room-"), "visibility": visibility})
	require.Equal(t, http.StatusCreated, r.Status, "create room: %s", r.Raw)
	return r.Body["id"].(string)
}

// AddMember adds u to room on behalf of owner.
func (c *Client) AddMember(t testing.TB, owner User, room string, u User) {
	t.Helper()
	r := c.Do(t, "POST", "/api/v1/rooms/"+room+"/members", owner.Token, map[string]any{"username": u.Username})
	require.Equal(t, http.StatusOK, r.Status, "add member: %s", r.Raw)
}

// Post sends a message through the HTTP API and requires 201.
func (c *Client) Post(t testing.TB, u User, room string, req map[string]any) Message {
	t.Helper()
	r := c.Do(t, "POST", "/api/v1/rooms/"+room+"/messages", u.Token, req)
	require.Equal(t, http.StatusCreated, r.Status, "post: %s", r.Raw)
	return Decode[Message](t, r)
}

// Say posts a top-level message with body.
func (c *Client) Say(t testing.TB, u User, room, body string) Message {
	t.Helper()
	return c.Post(t, u, room, map[string]any{"body": body})
}

// History is GET /api/v1/rooms/{room}/messages?query as u, requiring 200
// and the shape of SPEC §5.
func (c *Client) History(t testing.TB, u User, room, query string) History {
	t.Helper()
	r := c.Do(t, "GET", "/api/v1/rooms/"+room+"/messages?"+query, u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "history ?%s: %s", query, r.Raw)
	require.NotNil(t, r.Body["messages"], "messages must be a list, not null: %s", r.Raw)
	require.Contains(t, r.Body, "next_cursor")
	return Decode[History](t, r)
}

// The shapes of SPEC §3–§5 and §13 as a client decodes them.
type (
	// Sender is a message's sender.
	Sender struct {
		ID          string `json:"id"`
		Username    string `json:"username"`
		DisplayName string `json:"display_name"`
	}
	// Profile is GET /api/v1/me.
	Profile struct {
		ID            string  `json:"id"`
		Username      string  `json:"username"`
		DisplayName   string  `json:"display_name"`
		Phone         *string `json:"phone"`
		PhoneVerified bool    `json:"phone_verified"`
		SMSNotify     bool    `json:"sms_notify"`
		SlackUserID   *string `json:"slack_user_id"`
		CreatedAt     string  `json:"created_at"`
	}
	// Tokens is the answer of register, login and refresh.
	Tokens struct {
		User         Profile `json:"user"`
		AccessToken  string  `json:"access_token"`
		RefreshToken string  `json:"refresh_token"`
		ExpiresIn    int     `json:"expires_in"`
	}
	// Room is a room as GET /api/v1/rooms lists it.
	Room struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		Visibility  string `json:"visibility"`
		LastSeq     int64  `json:"last_seq"`
		LastReadSeq int64  `json:"last_read_seq"`
		Unread      int64  `json:"unread"`
		Mentions    int64  `json:"mentions"`
	}
	// Message is a stored message.
	Message struct {
		ID         string  `json:"id"`
		RoomID     string  `json:"room_id"`
		Seq        int64   `json:"seq"`
		Sender     Sender  `json:"sender"`
		Body       string  `json:"body"`
		ParentID   *string `json:"parent_id"`
		ReplyCount int     `json:"reply_count"`
		Source     string  `json:"source"`
		ClientID   *string `json:"client_id"`
		CreatedAt  string  `json:"created_at"`
		// SPEC §13.
		EditedAt  *string    `json:"edited_at"`
		Deleted   bool       `json:"deleted"`
		Reactions []Reaction `json:"reactions"`
		Mentions  []string   `json:"mentions"`
	}
	// Reaction is one emoji on a message.
	Reaction struct {
		Emoji   string   `json:"emoji"`
		Count   int      `json:"count"`
		UserIDs []string `json:"user_ids"`
	}
	// History is a page of a room's history.
	History struct {
		Messages   []Message `json:"messages"`
		NextCursor *string   `json:"next_cursor"`
	}
)
