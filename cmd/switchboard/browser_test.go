package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/hub"
	"github.com/switchboard-chat/switchboard/internal/apitest"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// The browser tests drive the client served at / in Debian's headless
// Chromium (scripts/chromium-up.sh installs it; `make test` runs that).

// chromiumPath finds the browser. Without one the tests skip, but in CI
// (CI set) they fail: there `make test` must have installed it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (run scripts/chromium-up.sh)")
	}
	t.Skip("chromium is not installed; scripts/chromium-up.sh installs it")
	return ""
}

// browser is one headless Chromium process for a test.
type browser struct {
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	bin := chromiumPath(t)
	// A fresh profile per browser. Chromium's helper processes may still
	// write in it for a moment after the browser exits, so removal retries
	// (t.TempDir would fail the test instead).
	profile, err := os.MkdirTemp("", "switchboard-chromium-")
	require.NoError(t, err)
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove %s", profile)
	})
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	require.NoError(t, chromedp.Do(ctx), "start chromium")
	return &browser{ctx: ctx}
}

// tab is a page in a browser context of its own (own localStorage, as a
// separate person's browser), opened on base.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string

	mu         sync.Mutex
	exceptions []string
	violations []string // Content-Security-Policy reports
}

func (b *browser) newTab(t *testing.T, base string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &tab{t: t, ctx: ctx, base: base}
	require.NoError(t, chromedp.Do(ctx))
	// An uncaught exception in the client, or anything the
	// Content-Security-Policy blocks, fails the test.
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			switch {
			case m.IsException():
				p.exceptions = append(p.exceptions, m.Text)
			case strings.Contains(m.Text, "Content Security Policy"):
				p.violations = append(p.violations, m.Text)
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.exceptions) > 0 {
			t.Errorf("uncaught exceptions in the page: %q", p.exceptions)
		}
		if len(p.violations) > 0 {
			t.Errorf("Content-Security-Policy violations: %q", p.violations)
		}
	})
	p.do(chromedp.Navigate(base))
	return p
}

// do runs actions, each call bounded by 20 s.
func (p *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browser: %v\npage text:\n%s", err, p.pageText())
	}
}

// eval evaluates a JavaScript expression and decodes its JSON value.
func eval[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(p.t, err, "evaluate %s", expr)
	return v
}

// waitJS waits up to 20 s until expr is truthy.
func (p *tab) waitJS(what, expr string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool]("!!("+expr+")",
		chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		p.t.Fatalf("waiting for %s: %v\npage text:\n%s", what, err, p.pageText())
	}
}

func (p *tab) pageText() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
	return s
}

// clear empties the input with this id.
func (p *tab) clear(id string) {
	p.t.Helper()
	p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById(` + js(id) + `).value = ""`))
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// login signs in through the form and waits for the connection.
func (p *tab) login(u testUser) {
	p.t.Helper()
	p.do(
		chromedp.WaitVisible(chromedp.ID("auth-username")),
		chromedp.SendKeys(chromedp.ID("auth-username"), u.Username),
		chromedp.SendKeys(chromedp.ID("auth-password"), fixturePassword),
		chromedp.Click(chromedp.ID("auth-submit")),
	)
	p.waitConnected()
}

func (p *tab) waitConnected() {
	p.t.Helper()
	p.waitJS("connected", `document.getElementById("conn").dataset.state === "online"`)
}

// openRoom clicks the room in the sidebar and waits for its history.
func (p *tab) openRoom(id string) {
	p.t.Helper()
	sel := fmt.Sprintf(`#room-list [data-room="%s"]`, id)
	p.waitJS("room "+id+" listed", fmt.Sprintf(`document.querySelector(%s)`, js(sel)))
	p.do(chromedp.Click(chromedp.CSS(sel)))
	p.waitJS("room "+id+" open", fmt.Sprintf(`document.querySelector(%s).classList.contains("active") && !document.getElementById("composer").hidden`, js(sel)))
}

// say types text in the room composer and presses Enter.
func (p *tab) say(text string) {
	p.t.Helper()
	p.typeAndEnter("composer-input", text)
}

// typeAndEnter types text in the input with this id and presses Enter.
func (p *tab) typeAndEnter(id, text string) {
	p.t.Helper()
	p.do(chromedp.SendKeys(chromedp.ID(id), text), pressEnter(0))
}

// pressEnter presses Enter in the focused element as a keyboard does: one
// keydown carrying the text, so that a handler cancelling the keydown stops
// the new line. (kb.Enter sends the text in a separate char event that no
// keydown handler can cancel.)
func pressEnter(modifiers chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		down := input.DispatchKeyEventParams{Type: input.DispatchKeyEventTypeKeyDown, Key: "Enter", Code: "Enter",
			WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13, Text: "\r", UnmodifiedText: "\r", Modifiers: int64(modifiers)}
		if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, down); err != nil {
			return err
		}
		up := down
		up.Type, up.Text, up.UnmodifiedText = input.DispatchKeyEventTypeKeyUp, "", ""
		_, err := cdp.Call(ctx, t, input.DispatchKeyEvent, up)
		return err
	})
}

// waitMessage waits until the open room shows a message with this body.
func (p *tab) waitMessage(body string) {
	p.t.Helper()
	p.waitJS("message "+body, fmt.Sprintf(
		`[...document.querySelectorAll("#messages li.msg[data-seq] .body")].some(e => e.textContent === %s)`, js(body)))
}

// shownSeqs is the seqs of the open room's messages, in page order.
func (p *tab) shownSeqs() []int64 {
	p.t.Helper()
	return eval[[]int64](p, `[...document.querySelectorAll("#messages li.msg[data-seq]")].map(e => Number(e.dataset.seq))`)
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// newBrowserServer starts a node that a browser can load the client from
// (its public URL is its own address, so the WebSocket Origin check passes).
func newBrowserServer(t *testing.T, databaseURL, addr string, tune func(*hub.Config)) *testServer {
	t.Helper()
	if addr == "" {
		addr = freePort(t)
	}
	return newTestServerWith(t, nodeOptions{databaseURL: databaseURL, addr: addr, tune: tune})
}

func TestClientServedWithCSP(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	for _, path := range []string{"/", "/app.js", "/style.css"} {
		r := s.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, r.Status, path)
		csp := r.Header.Get("Content-Security-Policy")
		require.Contains(t, csp, "script-src 'self'", path)
		require.NotContains(t, csp, "unsafe-inline", path)
		require.NotContains(t, csp, "unsafe-eval", path)
		require.Contains(t, csp, "connect-src 'self' ws://"+strings.TrimPrefix(s.URL, "http://"), path)
	}
	app := s.do(t, "GET", "/app.js", "", nil)
	require.Contains(t, app.Header.Get("Content-Type"), "javascript")
	// Revalidation by ETag.
	req, err := http.NewRequest("GET", s.URL+"/app.js", nil)
	require.NoError(t, err)
	req.Header.Set("If-None-Match", app.Header.Get("ETag"))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotModified, resp.StatusCode)
	require.Equal(t, http.StatusMethodNotAllowed, s.do(t, "POST", "/", "", nil).Status)
	// The API and health endpoints are not shadowed by the client.
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/healthz", "", nil).Status)
	require.Equal(t, "not_found", s.do(t, "GET", "/api/v1/nope", "", nil).ErrorCode())
}

// TestBrowserAccount registers through the form, stays signed in across a
// reload, logs out (the old access token is refused from then on) and logs
// in again.
func TestBrowserAccount(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", nil)
	p := newBrowser(t).newTab(t, s.URL)

	name := fmt.Sprintf("reg%d", apitest.Seq())
	p.do(
		chromedp.WaitVisible(chromedp.ID("auth-username")),
		chromedp.Click(chromedp.ID("tab-register")),
		chromedp.WaitVisible(chromedp.ID("auth-display")),
		chromedp.SendKeys(chromedp.ID("auth-username"), name),
		chromedp.SendKeys(chromedp.ID("auth-password"), "correct horse"),
		chromedp.SendKeys(chromedp.ID("auth-display"), "Regina"),
		chromedp.Click(chromedp.ID("auth-submit")),
	)
	p.waitConnected()
	require.Equal(t, "Regina", eval[string](p, `document.getElementById("me-name").textContent`))

	p.do(chromedp.Reload())
	p.waitConnected()
	require.Equal(t, "Regina", eval[string](p, `document.getElementById("me-name").textContent`))

	// A refused access token is replaced through the refresh token, which
	// rotates.
	oldRefresh := eval[string](p, `JSON.parse(localStorage.getItem("switchboard.session")).refresh_token`)
	p.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const s = JSON.parse(localStorage.getItem("switchboard.session"));
		s.access_token = "not-a-token";
		localStorage.setItem("switchboard.session", JSON.stringify(s));
	})()`), chromedp.Reload())
	p.waitConnected()
	p.waitJS("rooms loaded", `document.getElementById("no-rooms").hidden === false`)
	token := eval[string](p, `JSON.parse(localStorage.getItem("switchboard.session")).access_token`)
	require.NotEqual(t, "not-a-token", token)
	require.NotEqual(t, oldRefresh, eval[string](p, `JSON.parse(localStorage.getItem("switchboard.session")).refresh_token`))
	require.Equal(t, http.StatusOK, s.do(t, "GET", "/api/v1/me", token, nil).Status)

	// Profile settings.
	p.do(chromedp.Click(chromedp.ID("profile-open")))
	p.waitJS("profile loaded", `document.getElementById("profile-display").value === "Regina"`)
	p.do(
		chromedp.SendKeys(chromedp.ID("profile-phone"), "+14155550123"),
		chromedp.Click(chromedp.ID("profile-sms")),
		chromedp.SendKeys(chromedp.ID("profile-slack"), "U012AB3CD"),
		chromedp.Click(chromedp.ID("profile-save")),
	)
	// A new number is saved unverified (SMS is off on this node: no code
	// comes), and the dialog stays open for its code.
	p.waitJS("code asked for", `document.getElementById("profile-phone-state").dataset.state === "unverified"`)
	require.True(t, eval[bool](p, `document.getElementById("profile-dialog").open && !document.getElementById("profile-verify-box").hidden`))
	me := s.do(t, "GET", "/api/v1/me", token, nil)
	require.Equal(t, "+14155550123", me.Body["phone"])
	require.Equal(t, false, me.Body["phone_verified"])
	require.Equal(t, true, me.Body["sms_notify"])
	require.Equal(t, "U012AB3CD", me.Body["slack_user_id"])
	p.do(chromedp.Click(chromedp.ID("profile-cancel")))
	p.waitJS("profile closed", `!document.getElementById("profile-dialog").open`)

	p.do(chromedp.Click(chromedp.ID("logout")))
	p.waitJS("login form", `!document.getElementById("auth-view").hidden`)
	require.True(t, eval[bool](p, `localStorage.getItem("switchboard.session") === null`))
	require.Eventually(t, func() bool {
		return s.do(t, "GET", "/api/v1/me", token, nil).Status == http.StatusUnauthorized
	}, 5*time.Second, 50*time.Millisecond, "the logged-out token still works")

	// A wrong password is refused in the form.
	p.clear("auth-username")
	p.clear("auth-password")
	p.do(
		chromedp.SendKeys(chromedp.ID("auth-username"), name),
		chromedp.SendKeys(chromedp.ID("auth-password"), "wrong password"),
		chromedp.Click(chromedp.ID("auth-submit")),
	)
	p.waitJS("error", `document.getElementById("auth-error").textContent.includes("Wrong username or password")`)
	p.clear("auth-password")
	p.do(
		chromedp.SendKeys(chromedp.ID("auth-password"), "correct horse"),
		chromedp.Click(chromedp.ID("auth-submit")),
	)
	p.waitConnected()
}

// TestBrowserTwoUsersChat has two people in two browsers: one creates a
// room and adds the other; they talk live, see each other typing and
// online, and reply in a thread.
func TestBrowserTwoUsersChat(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	b := newBrowser(t)
	pa, pb := b.newTab(t, s.URL), b.newTab(t, s.URL)
	pa.login(alice)
	pb.login(bob)

	roomName := fmt.Sprintf("talk-%d", apitest.Seq())
	pa.do(
		chromedp.SendKeys(chromedp.ID("create-room-name"), roomName),
		chromedp.Click(chromedp.CSS("#create-room button[type=submit]")),
	)
	pa.waitJS("room open", `document.getElementById("room-name").textContent === `+js("#"+roomName))
	roomID := eval[string](pa, `document.querySelector("#room-list .room.active").dataset.room`)
	require.Equal(t, "#"+roomName, eval[string](pa, `document.querySelector("#room-list .room.active").textContent`))
	pa.do(
		chromedp.Click(chromedp.ID("add-member-open")),
		chromedp.SendKeys(chromedp.ID("add-member-name"), bob.Username),
		chromedp.Click(chromedp.CSS("#add-member button[type=submit]")),
	)
	pa.waitJS("member added", `document.getElementById("add-member-status").textContent.startsWith("Added")`)

	// Bob's list gets the room live (his connection is subscribed to it).
	pb.openRoom(roomID)
	pa.waitJS("bob online", fmt.Sprintf(`document.querySelector('#online [data-user="%s"]')`, bob.ID))

	pa.say("hello bob")
	pb.waitMessage("hello bob")
	pa.waitMessage("hello bob")
	// Bob types: Alice sees it.
	pb.do(chromedp.SendKeys(chromedp.ID("composer-input"), "hi"))
	pa.waitJS("typing line", `document.getElementById("typing").textContent.includes(`+js(bob.Username)+`)`)
	pb.typeAndEnter("composer-input", " alice")
	pa.waitMessage("hi alice")
	pa.waitJS("typing line cleared by the message", `document.getElementById("typing").textContent === ""`)
	pb.waitMessage("hi alice")
	pb.waitJS("composer emptied", `document.getElementById("composer-input").value === ""`)
	require.Equal(t, []int64{1, 2}, pa.shownSeqs())
	require.Equal(t, []int64{1, 2}, pb.shownSeqs())
	// Sender, source badge and no pending state left.
	require.Equal(t, bob.Username, eval[string](pa, `document.querySelector('#messages [data-seq="2"] .sender').textContent`))
	require.Equal(t, "web", eval[string](pa, `document.querySelector('#messages [data-seq="2"] .badge').textContent`))
	pa.waitJS("nothing pending", `!document.querySelector("#messages .pending, #messages .failed")`)

	// Shift+Enter makes a new line, not a send.
	pa.do(chromedp.SendKeys(chromedp.ID("composer-input"), "two"), pressEnter(chromedp.ModifierShift))
	pa.typeAndEnter("composer-input", "lines")
	pb.waitMessage("two\nlines")

	// Alice replies to Bob's message in its thread.
	pa.do(chromedp.Click(chromedp.CSS(`#messages [data-seq="2"] .thread-link`)))
	pa.waitJS("thread open", `!document.getElementById("thread-pane").hidden`)
	pa.typeAndEnter("thread-input", "a reply in the thread")
	pa.waitJS("reply shown", `[...document.querySelectorAll("#thread-replies li.msg.reply[data-seq] .body")].some(e => e.textContent === "a reply in the thread")`)
	// Bob sees the reply count on the message, and the reply in the thread.
	pb.waitJS("reply count", `document.querySelector('#messages [data-seq="2"] .thread-link').textContent === "1 reply"`)
	pb.do(chromedp.Click(chromedp.CSS(`#messages [data-seq="2"] .thread-link`)))
	pb.waitJS("thread reply", `[...document.querySelectorAll("#thread-replies li.msg.reply .body")].map(e => e.textContent).join() === "a reply in the thread"`)
	// The reply is not a top-level message of the room.
	require.Equal(t, []int64{1, 2, 3}, pb.shownSeqs())
	// Bob replies too; Alice's open thread shows it live.
	pb.typeAndEnter("thread-input", "and mine")
	pa.waitJS("second reply", `[...document.querySelectorAll("#thread-replies li.msg.reply .body")].map(e => e.textContent).join("|") === "a reply in the thread|and mine"`)
	pa.waitJS("reply count 2", `document.querySelector('#messages [data-seq="2"] .thread-link').textContent === "2 replies"`)

	// Bob finds a public room he is not in and joins it.
	lobby := s.createRoom(t, alice, "public")
	pb.do(chromedp.Click(chromedp.ID("thread-close")), chromedp.Click(chromedp.ID("browse-open")))
	pb.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#public-list [data-room="%s"] button`, lobby))))
	pb.waitJS("joined room open", fmt.Sprintf(`document.querySelector("#room-list .room.active")?.dataset.room === %s`, js(lobby)))
	pb.say("joined")
	pa.openRoom(lobby)
	pa.waitMessage("joined")

	// And leaves it again.
	pb.do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`), chromedp.Click(chromedp.ID("leave-room")))
	pb.waitJS("room gone", fmt.Sprintf(`!document.querySelector('#room-list [data-room="%s"]')`, lobby))
	require.Equal(t, http.StatusForbidden, s.do(t, "GET", "/api/v1/rooms/"+lobby+"/messages", bob.Token, nil).Status)
}

// TestBrowserXSS sends markup as a display name and as a message body: the
// other person's browser shows it as text and runs nothing.
func TestBrowserXSS(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	b := newBrowser(t)
	pa, pb := b.newTab(t, s.URL), b.newTab(t, s.URL)
	pa.login(alice)
	pb.login(bob)
	pb.openRoom(room)

	evilName := `<img src=x onerror="window.pwned=1">`
	evilBody := `<script>window.pwned=2</script><img src=x onerror="window.pwned=3"><b>bold</b>`
	// The display name goes through the profile dialog.
	pa.do(chromedp.Click(chromedp.ID("profile-open")))
	pa.waitJS("profile loaded", `document.getElementById("profile-display").value === `+js(alice.Username))
	pa.clear("profile-display")
	pa.do(
		chromedp.SendKeys(chromedp.ID("profile-display"), evilName),
		chromedp.Click(chromedp.ID("profile-save")),
	)
	pa.waitJS("profile saved", `!document.getElementById("profile-dialog").open`)
	pa.openRoom(room)
	pa.say(evilBody)

	pb.waitMessage(evilBody)
	require.Equal(t, evilName, eval[string](pb, `document.querySelector('#messages [data-seq="1"] .sender').textContent`))
	require.Equal(t, 0, eval[int](pb, `document.querySelectorAll("#messages img, #messages script, #messages b").length`))
	pa.waitMessage(evilBody)
	require.Equal(t, 0, eval[int](pa, `document.querySelectorAll("#messages img, #messages script, #messages b, #me-name img").length`))
	require.Equal(t, evilName, eval[string](pa, `document.getElementById("me-name").textContent`))
	time.Sleep(200 * time.Millisecond) // an onerror would have fired by now
	require.True(t, eval[bool](pb, `window.pwned === undefined`))
	require.True(t, eval[bool](pa, `window.pwned === undefined`))

	// Were markup ever inserted, the policy would still block inline code.
	pb.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const s = document.createElement("script");
		s.textContent = "window.pwned = 4";
		document.body.append(s);
	})()`))
	require.Eventually(t, func() bool {
		pb.mu.Lock()
		defer pb.mu.Unlock()
		return len(pb.violations) > 0
	}, 5*time.Second, 50*time.Millisecond, "no CSP report for an inline script")
	require.True(t, eval[bool](pb, `window.pwned === undefined`), "inline script ran")
	pb.mu.Lock()
	pb.violations = nil // expected
	pb.mu.Unlock()
}

// TestBrowserSendErrors: sends over the rate limit show as failed with a
// retry button that works; a body over the limit is flagged before sending
// and cannot be sent.
func TestBrowserSendErrors(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", func(c *hub.Config) { c.RateLimit, c.RateBurst = 1, 2 })
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, "public")
	p := newBrowser(t).newTab(t, s.URL)
	p.login(alice)
	p.openRoom(room)

	for i := range 5 {
		p.say(fmt.Sprintf("burst %d", i))
	}
	p.waitJS("a refused send", `document.querySelector("#messages li.failed")`)
	p.waitJS("no send in flight", `!document.querySelector("#messages li.pending")`)
	failed := eval[int](p, `document.querySelectorAll("#messages li.failed").length`)
	require.Positive(t, failed)
	require.Contains(t, eval[string](p, `document.querySelector("#messages li.failed .error").textContent`), "Too many messages")
	stored := len(p.shownSeqs())
	require.Equal(t, 5, stored+failed)

	// Retry each one after the bucket refills.
	for range failed {
		time.Sleep(1100 * time.Millisecond)
		p.do(chromedp.Click(chromedp.CSS("#messages li.failed .retry")))
		p.waitJS("retried send stored", fmt.Sprintf(`document.querySelectorAll("#messages li.msg[data-seq]").length === %d`, stored+1))
		stored++
	}
	require.Equal(t, seqRange(1, 5), p.shownSeqs())
	history := s.do(t, "GET", "/api/v1/rooms/"+room+"/messages", alice.Token, nil)
	require.Len(t, history.Body["messages"], 5, "each message stored once")

	// Too long: the counter says so before sending, and Enter sends nothing.
	p.do(chromedp.Evaluate[chromedp.Void](`(() => {
		const i = document.getElementById("composer-input");
		i.value = "x".repeat(4001);
		i.dispatchEvent(new Event("input"));
	})()`))
	require.Equal(t, "4001 / 4000: too long", eval[string](p, `document.getElementById("composer-count").textContent`))
	require.True(t, eval[bool](p, `document.getElementById("composer-send").disabled`))
	p.do(chromedp.Focus(chromedp.ID("composer-input")), pressEnter(0))
	time.Sleep(300 * time.Millisecond)
	require.False(t, eval[bool](p, `!!document.querySelector("#messages li.pending, #messages li.failed")`))
	require.Len(t, s.do(t, "GET", "/api/v1/rooms/"+room+"/messages", alice.Token, nil).Body["messages"], 5)
	// Back under the limit, it goes (once the rate limit allows a send).
	p.do(chromedp.SendKeys(chromedp.ID("composer-input"), kb.Backspace))
	time.Sleep(1100 * time.Millisecond)
	require.Equal(t, "4000 / 4000", eval[string](p, `document.getElementById("composer-count").textContent`))
	p.do(chromedp.Focus(chromedp.ID("composer-input")), pressEnter(0))
	p.waitJS("long message stored", `document.querySelectorAll("#messages li.msg[data-seq]").length === 6`)
}

// TestBrowserReconnect restarts the server under an open client: it shows
// the connection dropping, sends what was typed meanwhile once it is back,
// resumes with its last seqs and shows every message exactly once, also
// after a reload.
func TestBrowserReconnect(t *testing.T) {
	t.Parallel()
	db := storagetest.NewDatabase(t)
	addr := freePort(t)
	s := newBrowserServer(t, db, addr, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	post := func(srv *testServer, body string) {
		r := srv.do(t, "POST", "/api/v1/rooms/"+room+"/messages", bob.Token, map[string]any{"body": body})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	}

	p := newBrowser(t).newTab(t, s.URL)
	p.login(alice)
	p.openRoom(room)
	for i := 1; i <= 3; i++ {
		post(s, fmt.Sprintf("before %d", i))
	}
	p.waitMessage("before 3")
	require.Equal(t, "API", eval[string](p, `document.querySelector('#messages [data-seq="3"] .badge').textContent`))

	p.waitJS("resume seq saved", fmt.Sprintf(`JSON.parse(localStorage.getItem("switchboard.seqs.%s") || "{}")[%s] === 3`, alice.ID, js(room)))

	// Another node on the same database takes messages while the client's
	// node is down; the client only gets them by resuming.
	other := newTestServerOn(t, db, nil)
	s.stop()
	p.waitJS("reconnecting shown", `document.getElementById("conn").textContent.includes("reconnecting in")`)
	for i := 1; i <= 3; i++ {
		post(other, fmt.Sprintf("while away %d", i))
	}
	// Typed while the server is away: shown as pending.
	p.say("typed while away")
	p.waitJS("pending", `document.querySelector("#messages li.pending")`)

	s2 := newBrowserServer(t, db, addr, nil)
	post(s2, "after restart")
	p.waitConnected()
	p.waitJS("all messages", `document.querySelectorAll("#messages li.msg[data-seq]").length === 8`)
	p.waitJS("nothing pending", `!document.querySelector("#messages li.pending")`)
	require.Equal(t, seqRange(1, 8), p.shownSeqs())
	bodies := eval[[]string](p, `[...document.querySelectorAll("#messages li.msg[data-seq] .body")].map(e => e.textContent)`)
	require.Equal(t, []string{"before 1", "before 2", "before 3", "while away 1", "while away 2", "while away 3"}, bodies[:6])
	require.ElementsMatch(t, []string{"after restart", "typed while away"}, bodies[6:])
	history := s2.do(t, "GET", "/api/v1/rooms/"+room+"/messages", alice.Token, nil)
	require.Len(t, history.Body["messages"], 8, "the message typed offline is stored once")

	// The resume seqs survive a reload; nothing is repeated after it.
	p.waitJS("resume seq saved", fmt.Sprintf(`JSON.parse(localStorage.getItem("switchboard.seqs.%s") || "{}")[%s] === 8`, alice.ID, js(room)))
	p.do(chromedp.Reload())
	p.waitConnected()
	post(s2, "after reload")
	p.waitMessage("after reload")
	require.Equal(t, seqRange(1, 9), p.shownSeqs())

	// The waits between attempts: exponential up to 30 s, each with jitter
	// (half fixed, half random).
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	waits, err := chromedp.Run(ctx, chromedp.Evaluate[[][]float64](`import("/socket.js").then(m =>
		[...Array(10).keys()].map(n => [...Array(50)].map(() => m.backoff(n))))`, chromedp.EvalAwaitPromise))
	require.NoError(t, err)
	for n, samples := range waits {
		ceiling := min(30000, 500*float64(int(1)<<n))
		lo, hi := samples[0], samples[0]
		for _, w := range samples {
			require.GreaterOrEqual(t, w, ceiling/2, "attempt %d", n)
			require.LessOrEqual(t, w, ceiling, "attempt %d", n)
			lo, hi = min(lo, w), max(hi, w)
		}
		require.Greater(t, hi-lo, ceiling/20, "attempt %d: no jitter in %v", n, samples)
	}
}

// TestBrowserHistoryScroll: a room opens on its newest messages; scrolling
// up loads older pages down to the first; a new message does not move a
// reader who scrolled up (a button offers the jump), and the unread count
// of a room not being read goes up live.
func TestBrowserHistoryScroll(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	room := s.createRoom(t, alice, "public")
	other := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, other, bob)
	post := func(roomID, body string) {
		r := s.do(t, "POST", "/api/v1/rooms/"+roomID+"/messages", bob.Token, map[string]any{"body": body})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	}
	for i := 1; i <= 120; i++ {
		post(room, fmt.Sprintf("message %d", i))
	}
	// Carol joins after the history: her browser gets nothing on connect
	// (members start at the room's end) and pages the history over HTTP.
	s.addMember(t, alice, room, carol)
	s.addMember(t, alice, other, carol)

	p := newBrowser(t).newTab(t, s.URL)
	p.login(carol)
	p.openRoom(room)
	p.waitMessage("message 120")
	require.Equal(t, seqRange(71, 120), p.shownSeqs(), "the newest page")
	require.True(t, eval[bool](p, `(() => { const l = document.getElementById("messages"); return l.scrollHeight - l.scrollTop - l.clientHeight < 40 })()`),
		"opens at the bottom")

	for range 5 {
		if len(p.shownSeqs()) == 120 {
			break
		}
		p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 0`))
		time.Sleep(300 * time.Millisecond)
	}
	p.waitJS("every page", `document.querySelectorAll("#messages li.msg[data-seq]").length === 120`)
	require.Equal(t, seqRange(1, 120), p.shownSeqs())

	// Scrolled up: a new message shows the jump button and keeps the place.
	p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 200`))
	top := eval[float64](p, `document.getElementById("messages").scrollTop`)
	post(room, "while scrolled up")
	p.waitMessage("while scrolled up")
	p.waitJS("jump button", `!document.getElementById("jump").hidden`)
	require.InDelta(t, top, eval[float64](p, `document.getElementById("messages").scrollTop`), 2)
	p.do(chromedp.Click(chromedp.ID("jump")))
	p.waitJS("at the bottom", `(() => { const l = document.getElementById("messages"); return l.scrollHeight - l.scrollTop - l.clientHeight < 40 })()`)

	// At the bottom, a new message keeps the view at the bottom.
	post(room, "at the bottom")
	p.waitMessage("at the bottom")
	p.waitJS("still at the bottom", `(() => { const l = document.getElementById("messages"); return l.scrollHeight - l.scrollTop - l.clientHeight < 40 })()`)

	// The other room counts what arrives while this one is open.
	post(other, "elsewhere 1")
	post(other, "elsewhere 2")
	p.waitJS("unread 2", fmt.Sprintf(`document.querySelector('#room-list [data-room="%s"] .unread')?.textContent === "2"`, other))
	require.Regexp(t, `^#room-\d+2$`, eval[string](p, fmt.Sprintf(`document.querySelector('#room-list [data-room="%s"]').textContent`, other)))
	p.openRoom(other)
	p.waitJS("read", fmt.Sprintf(`!document.querySelector('#room-list [data-room="%s"] .unread')`, other))
	// Reading is stored: the server's count is 0 too.
	require.Eventually(t, func() bool {
		r := s.do(t, "GET", "/api/v1/rooms", carol.Token, nil)
		for _, x := range r.Body["rooms"].([]any) {
			if m := x.(map[string]any); m["id"] == other {
				return m["unread"] == float64(0)
			}
		}
		return false
	}, 5*time.Second, 50*time.Millisecond)
}

// TestBrowserPhone uses the client at phone size: one pane at a time, the
// room list, the room with a way back, and the thread over the room; then
// the profile verifies a phone number with the code sent by SMS.
func TestBrowserPhone(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{addr: freePort(t), twilio: fake})
	alice := s.register(t, "alice")
	room := s.createRoom(t, alice, "public")
	p := newBrowser(t).newTab(t, s.URL)
	p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile))
	p.login(alice)
	shown := func(id string) bool {
		return eval[bool](p, `(() => { const r = document.getElementById(`+js(id)+`).getBoundingClientRect();
			return r.width > 0 && r.height > 0 && r.left >= 0 && r.right <= innerWidth + 1 })()`)
	}
	require.True(t, shown("sidebar"))
	require.False(t, shown("room-pane"))

	p.openRoom(room)
	require.False(t, shown("sidebar"))
	require.True(t, shown("room-pane"))
	require.Equal(t, 390.0, eval[float64](p, `document.getElementById("room-pane").getBoundingClientRect().width`))
	p.say("from a phone")
	p.waitMessage("from a phone")

	p.do(chromedp.Click(chromedp.CSS(`#messages [data-seq="1"] .thread-link`)))
	p.waitJS("thread open", `!document.getElementById("thread-pane").hidden`)
	// The thread covers the whole screen.
	require.Equal(t, []float64{0, 0, 390, 844}, eval[[]float64](p, `(() => {
		const r = document.getElementById("thread-pane").getBoundingClientRect();
		return [r.left, r.top, r.width, r.height] })()`))
	p.typeAndEnter("thread-input", "reply from a phone")
	p.waitJS("reply", `[...document.querySelectorAll("#thread-replies li.reply .body")].some(e => e.textContent === "reply from a phone")`)
	p.do(chromedp.Click(chromedp.ID("thread-close")))
	p.waitJS("thread closed", `document.getElementById("thread-pane").hidden`)
	p.waitJS("reply count", `document.querySelector('#messages [data-seq="1"] .thread-link').textContent === "1 reply"`)

	p.do(chromedp.Click(chromedp.ID("back")))
	p.waitJS("room list again", `getComputedStyle(document.getElementById("room-pane")).display === "none"`)
	require.True(t, shown("sidebar"))

	// The phone number: saved, then a code input and a verify button.
	const phone = "+14155550188"
	phoneState := func() string {
		return eval[string](p, `document.getElementById("profile-phone-state").dataset.state`)
	}
	p.do(chromedp.Click(chromedp.ID("profile-open")))
	p.waitJS("profile loaded", `document.getElementById("profile-display").value === `+js(alice.Username))
	require.Equal(t, "none", phoneState())
	require.False(t, shown("profile-verify-box"))
	p.do(chromedp.SendKeys(chromedp.ID("profile-phone"), phone), chromedp.Click(chromedp.ID("profile-save")))
	p.waitJS("code asked for", `document.getElementById("profile-phone-state").dataset.state === "unverified"`)
	require.True(t, shown("profile-code"))
	require.True(t, shown("profile-verify"))
	require.Contains(t, eval[string](p, `document.getElementById("profile-phone-state").textContent`), "Not verified")
	code := nthCode(t, fake, phone, 1)

	// A wrong code is refused and shown; the right one, entered with
	// Enter, verifies the number.
	p.do(chromedp.SendKeys(chromedp.ID("profile-code"), otherCode(code)), chromedp.Click(chromedp.ID("profile-verify")))
	p.waitJS("wrong code shown", `document.getElementById("profile-error").textContent === "wrong code"`)
	require.Equal(t, "unverified", phoneState())
	p.clear("profile-code")
	p.typeAndEnter("profile-code", code)
	p.waitJS("verified", `document.getElementById("profile-phone-state").dataset.state === "verified"`)
	require.Equal(t, "✓ Verified", eval[string](p, `document.getElementById("profile-phone-state").textContent`))
	require.False(t, shown("profile-verify-box"))
	require.True(t, s.me(t, alice).PhoneVerified)

	// Reopened, the profile shows the number verified; saving another
	// field sends the number again to no one.
	p.do(chromedp.Click(chromedp.ID("profile-cancel")))
	p.do(chromedp.Click(chromedp.ID("profile-open")))
	p.waitJS("verified on reopening", `document.getElementById("profile-phone-state").dataset.state === "verified" && document.getElementById("profile-phone").value === `+js(phone))
	p.do(chromedp.Click(chromedp.ID("profile-sms")), chromedp.Click(chromedp.ID("profile-save")))
	p.waitJS("profile saved", `!document.getElementById("profile-dialog").open`)
	me := s.me(t, alice)
	require.True(t, me.SMSNotify)
	require.True(t, me.PhoneVerified)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, fake.Accepted(), 1, "one code, no other SMS")
}

// TestBrowserReauthInPlace: the client sends a fresh token on its open
// socket before the last one expires (SPEC §3), so the server never closes
// it and it never reconnects, through several token lifetimes.
func TestBrowserReauthInPlace(t *testing.T) {
	t.Parallel()
	s := newTestServerWith(t, nodeOptions{addr: freePort(t), accessTTL: 6 * time.Second})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)

	p := newBrowser(t).newTab(t, s.URL)
	p.login(alice)
	p.openRoom(room)
	// From now on, count the sockets the client opens and the fresh tokens
	// it sends.
	eval[bool](p, `(() => {
		window.__opened = 0; window.__reauths = 0;
		const W = window.WebSocket;
		window.WebSocket = class extends W { constructor(...a) { super(...a); window.__opened++; } };
		const send = W.prototype.send;
		W.prototype.send = function (data) {
			if (String(data).includes('"reauth"')) window.__reauths++;
			return send.call(this, data);
		};
		return true;
	})()`)
	time.Sleep(14 * time.Second) // more than two lifetimes of a token
	bob = s.login(t, bob.Username, fixturePassword)
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", bob.Token, map[string]any{"body": "still live"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	p.waitMessage("still live")
	require.Equal(t, 0, eval[int](p, `window.__opened`), "the client reconnected")
	require.GreaterOrEqual(t, eval[int](p, `window.__reauths`), 2)
}

// TestBrowserTeams: a direct message started through people autocomplete
// (with the peer's presence in the room list), the members panel (roles,
// remove, ban, unban), room settings (rename, topic, archive) and a search
// whose result opens the message in its room (SPEC §14).
func TestBrowserTeams(t *testing.T) {
	t.Parallel()
	s := newBrowserServer(t, "", "", nil)
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	b := newBrowser(t)
	pa, pb := b.newTab(t, s.URL), b.newTab(t, s.URL)
	pa.login(alice)
	pb.login(bob)

	// A direct message: the people look-up suggests bob as alice types.
	pa.do(chromedp.SendKeys(chromedp.ID("dm-name"), bob.Username[:4]))
	pa.waitJS("bob suggested", fmt.Sprintf(`document.querySelector('#people option[value=%s]')`, js(bob.Username)))
	pa.clear("dm-name")
	pa.typeAndEnter("dm-name", bob.Username)
	pa.waitJS("direct room open", `document.getElementById("room-name").textContent === `+js("@"+bob.Username))
	dm := eval[string](pa, `document.querySelector("#room-list .room.active").dataset.room`)
	pa.waitJS("bob online in the list", fmt.Sprintf(`document.querySelector('#room-list [data-room="%s"] .peer-dot.on')`, dm))
	pa.say("psst")
	pb.openRoom(dm)
	pb.waitMessage("psst")
	require.Equal(t, "@"+alice.Username, eval[string](pb, `document.getElementById("room-name").textContent`))
	require.True(t, eval[bool](pb, `document.getElementById("settings-open").hidden`), "a direct room has no settings")

	// A room of alice's with bob and carol: the members panel.
	room := s.createRoom(t, alice, "private")
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, room, carol)
	for i := range 60 {
		s.api.Say(t, alice, room, fmt.Sprintf("filler %d", i))
	}
	found := s.api.Say(t, bob, room, "the needle in the haystack")
	for i := range 60 {
		s.api.Say(t, alice, room, fmt.Sprintf("more filler %d", i))
	}
	pa.openRoom(room)
	pa.do(chromedp.Click(chromedp.ID("members-open")))
	member := func(id string) string { return fmt.Sprintf(`#member-list [data-user="%s"]`, id) }
	pa.waitJS("roles listed", fmt.Sprintf(`document.querySelector('%s .role')?.textContent === "owner"`, member(alice.ID)))
	require.Equal(t, "member", eval[string](pa, fmt.Sprintf(`document.querySelector('%s .role').textContent`, member(bob.ID))))
	pa.do(chromedp.Click(chromedp.CSS(member(carol.ID) + ` [data-action="remove"]`)))
	pa.waitJS("carol removed", fmt.Sprintf(`!document.querySelector('%s')`, member(carol.ID)))
	pb.openRoom(room)
	pa.do(chromedp.Click(chromedp.CSS(member(bob.ID) + ` [data-action="ban"]`)))
	pa.waitJS("bob banned", fmt.Sprintf(`document.querySelector('#ban-list [data-user="%s"]') && !document.querySelector('%s')`, bob.ID, member(bob.ID)))
	pb.waitJS("room gone from bob's list", fmt.Sprintf(`!document.querySelector('#room-list [data-room="%s"]')`, room))
	require.Equal(t, "", eval[string](pb, `document.getElementById("room-name").textContent`), "bob's open room closed")
	pa.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#ban-list [data-user="%s"] [data-action="unban"]`, bob.ID))))
	pa.waitJS("bob unbanned", `document.querySelectorAll("#ban-list li[data-user]").length === 0`)
	pa.do(chromedp.Click(chromedp.ID("members-close")))
	s.addMember(t, alice, room, bob)

	// Search opens the message in its room, far back in its history.
	pa.typeAndEnter("search-input", "needle haystack")
	sel := fmt.Sprintf(`#search-results [data-id="%s"] button`, found.ID)
	pa.waitJS("result", fmt.Sprintf(`document.querySelector('%s')`, sel))
	pa.do(chromedp.Click(chromedp.CSS(sel)))
	pa.waitJS("message shown in context", fmt.Sprintf(`document.querySelector('#messages li.msg.found[data-id="%s"]')`, found.ID))

	// Settings: rename and topic reach bob live; archive closes the composer.
	pb.openRoom(room)
	name := fmt.Sprintf("renamed-%d", apitest.Seq())
	pa.do(chromedp.Click(chromedp.ID("settings-open")))
	pa.clear("settings-name")
	pa.do(chromedp.SendKeys(chromedp.ID("settings-name"), name),
		chromedp.SendKeys(chromedp.ID("settings-topic"), "Q3 plans"),
		chromedp.Click(chromedp.ID("settings-save")))
	pa.waitJS("renamed", `document.getElementById("room-name").textContent === `+js("#"+name))
	pb.waitJS("bob sees the new name", `document.getElementById("room-name").textContent === `+js("#"+name))
	pb.waitJS("bob sees the topic", `document.getElementById("room-topic").textContent === "Q3 plans"`)
	pa.do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.ID("settings-open")), chromedp.Click(chromedp.ID("settings-archive")))
	pb.waitJS("bob's composer closed", `document.getElementById("composer").hidden`)
	pa.waitJS("archived in the list", fmt.Sprintf(`document.querySelector('#room-list [data-room="%s"] .archived')`, room))
}
