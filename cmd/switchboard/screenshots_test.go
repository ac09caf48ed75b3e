package main

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
)

// TestScreenshots saves PNGs of the client's main screens, at desktop
// (1280x800) and phone (390x844) sizes, into the directory named by
// SWITCHBOARD_SCREENSHOTS (`make screenshots` gives docs/screenshots).
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("SWITCHBOARD_SCREENSHOTS")
	if dir == "" {
		t.Skip("set SWITCHBOARD_SCREENSHOTS to a directory (make screenshots)")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	s := newBrowserServer(t, "", "", nil)
	alice := s.registerNamed(t, "alice")
	bob := s.registerNamed(t, "bob")
	carol := s.registerNamed(t, "carol")
	for u, name := range map[testUser]string{alice: "Alice Martin", bob: "Bob Chen", carol: "Carol Diaz"} {
		r := s.do(t, "PATCH", "/api/v1/me", u.Token, map[string]any{"display_name": name})
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	}
	room := func(name, visibility string, members ...testUser) string {
		r := s.do(t, "POST", "/api/v1/rooms", alice.Token, map[string]any{"name": name, "visibility": visibility})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
		id := r.Body["id"].(string)
		for _, m := range members {
			s.addMember(t, alice, id, m)
		}
		return id
	}
	general := room("general", "public", bob, carol)
	design := room("design", "private", bob)
	random := room("random", "public", carol)
	room("releases", "public")

	post := func(u testUser, roomID, body, parent string) string {
		req := map[string]any{"body": body}
		if parent != "" {
			req["parent_id"] = parent
		}
		r := s.do(t, "POST", "/api/v1/rooms/"+roomID+"/messages", u.Token, req)
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
		return r.Body["id"].(string)
	}
	// As the SMS and Slack integrations store them.
	external := func(u testUser, roomID, body, source, externalID string) {
		_, _, err := s.node.poster.Post(t.Context(), chat.NewMessage{RoomID: roomID, SenderID: u.ID, Body: body,
			Source: source, ExternalID: externalID})
		require.NoError(t, err)
	}
	// change makes an edit, delete or reaction (SPEC §13).
	change := func(u testUser, method, path string, body any) {
		r := s.do(t, method, path, u.Token, body)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	}
	morning := post(alice, general, "Morning all! The 2.4 release candidate is up on staging.", "")
	nice := post(bob, general, "Nice. I'll run the load test against it after lunch.", "")
	change(bob, "PATCH", "/api/v1/messages/"+nice, map[string]any{"body": "Nice. I'll run the load test against it after stand-up."})
	for _, u := range []testUser{bob, carol} {
		change(u, "PUT", "/api/v1/messages/"+morning+"/reactions/"+url.PathEscape("👍"), nil)
	}
	change(carol, "PUT", "/api/v1/messages/"+morning+"/reactions/"+url.PathEscape("🎉"), nil)
	oops := post(bob, general, "wrong room, sorry", "")
	change(bob, "DELETE", "/api/v1/messages/"+oops, nil)
	external(carol, general, "On the train, will look at the release notes in 20 min", chat.SourceSMS, "SM1")
	launch := post(alice, general, "Can everyone check their part of the checklist before 3pm?\n- API docs\n- migrations\n- dashboards", "")
	post(bob, general, "Migrations are done and reversible.", launch)
	post(carol, general, "Dashboards updated.", launch)
	external(bob, general, "Load test: p99 delivery 38 ms at 20k connections", chat.SourceSlack, "Ev1")
	post(carol, general, "Release notes look good to me, @alice. Ship it when ready.", "")
	post(bob, design, "New mockups for the settings page are in the shared folder.", "")
	post(bob, design, "Feedback welcome before Friday, @alice especially.", "")
	post(carol, random, "Anyone up for lunch at 12:30?", "")
	r := s.do(t, "PATCH", "/api/v1/rooms/"+general, alice.Token, map[string]any{"topic": "Release 2.4 this week · checklist in the pinned thread"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	r = s.do(t, "PATCH", "/api/v1/rooms/"+general+"/members/"+bob.ID, alice.Token, map[string]any{"role": "admin"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Raw)
	r = s.do(t, "POST", "/api/v1/dms", bob.Token, map[string]any{"username": "alice"})
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Raw)
	post(bob, r.Body["id"].(string), "Do you have a minute to look at the release notes?", "")

	b := newBrowser(t)
	p := b.newTab(t, s.URL)
	shot := func(name string) {
		t.Helper()
		time.Sleep(300 * time.Millisecond) // let layout and fonts settle
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644))
	}
	desktop := func() { p.do(chromedp.EmulateViewport(1280, 800)) }
	phone := func() { p.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)) }

	desktop()
	p.do(chromedp.WaitVisible(chromedp.ID("auth-username")))
	shot("desktop-login")
	phone()
	shot("phone-login")
	desktop()

	// Bob and Carol are online; Bob is typing.
	bobWS, carolWS := s.dialWS(t, bob.Token), s.dialWS(t, carol.Token)
	bobWS.ready()
	carolWS.ready()
	p.login(alice)
	p.openRoom(general)
	p.waitJS("bob online", `document.querySelectorAll("#online li").length >= 2`)
	p.waitJS("history", `document.querySelectorAll("#messages li.msg[data-seq]").length === 7`)
	typing := func() {
		bobWS.send(map[string]any{"type": "typing", "room": general})
		p.waitJS("typing", `document.getElementById("typing").textContent !== ""`)
	}
	p.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Great work everyone"))
	typing()
	shot("desktop-room")

	p.do(chromedp.Click(chromedp.CSS(`#messages [data-id="` + launch + `"] .thread-link`)))
	p.waitJS("thread", `document.querySelectorAll("#thread-replies li.msg").length === 2`)
	shot("desktop-thread")

	// The reaction picker, and @ completion in the composer.
	p.clear("composer-input")
	p.do(chromedp.SendKeys(chromedp.ID("composer-input"), "Thanks @b"))
	p.waitJS("completion", `document.querySelectorAll("#composer .completion").length === 1`)
	shot("desktop-mention")
	p.clear("composer-input")
	p.do(chromedp.Evaluate[chromedp.Void](`document.getElementById("composer-input").dispatchEvent(new Event("input"))`))
	// The picker of a message, open.
	p.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#messages [data-id="` + morning + `"] .react-open').click()`))
	shot("desktop-reactions")
	p.do(chromedp.Evaluate[chromedp.Void](`document.querySelector('#messages [data-id="` + morning + `"] .react-open').click()`))

	p.do(chromedp.Click(chromedp.ID("profile-open")))
	p.waitJS("profile", `document.getElementById("profile-display").value === "Alice Martin"`)
	shot("desktop-profile")
	p.do(chromedp.Click(chromedp.ID("profile-cancel")))

	p.do(chromedp.Click(chromedp.ID("browse-open")))
	p.waitJS("public rooms", `document.querySelectorAll("#public-list li[data-room]").length === 3`)
	shot("desktop-browse")
	p.do(chromedp.Click(chromedp.ID("browse-close")))

	p.do(chromedp.Click(chromedp.ID("members-open")))
	p.waitJS("members", `document.querySelectorAll("#member-list li").length === 3`)
	shot("desktop-members")
	p.do(chromedp.Click(chromedp.ID("members-close")))

	p.typeAndEnter("search-input", "release notes")
	p.waitJS("search results", `document.querySelectorAll("#search-results li[data-id]").length >= 2`)
	shot("desktop-search")
	p.do(chromedp.Click(chromedp.ID("search-close")))

	phone()
	p.do(chromedp.Click(chromedp.ID("thread-close")), chromedp.Click(chromedp.ID("back")))
	p.waitJS("room list", `getComputedStyle(document.getElementById("sidebar")).display !== "none"`)
	shot("phone-rooms")
	p.openRoom(general)
	typing()
	shot("phone-room")
	p.do(chromedp.Click(chromedp.CSS(`#messages [data-id="` + launch + `"] .thread-link`)))
	p.waitJS("thread", `document.querySelectorAll("#thread-replies li.msg").length === 2`)
	shot("phone-thread")
}
