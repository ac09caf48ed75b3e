package main

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

// clickJS clicks the element sel matches from JavaScript: message actions
// show on hover only, where a synthetic mouse would not find them.
func (p *tab) clickJS(sel string) {
	p.t.Helper()
	p.waitJS(sel, fmt.Sprintf(`document.querySelector(%s)`, js(sel)))
	p.do(chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`document.querySelector(%s).click()`, js(sel))))
}

// TestBrowserMessageUpdates: two users; mentions counted in the room list
// and marked, reactions added from the picker and toggled, an edit marked
// "edited", a delete shown as a tombstone, all live on the other tab; then
// changes made while the tab's server is down are shown after it resumes.
func TestBrowserMessageUpdates(t *testing.T) {
	t.Parallel()
	db := storagetest.NewDatabase(t)
	addr := freePort(t)
	s := newBrowserServer(t, db, addr, nil)
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	room := s.createRoom(t, alice, "public")
	lobby := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, lobby, bob)

	b := newBrowser(t)
	pa, pb := b.newTab(t, s.URL), b.newTab(t, s.URL)
	pa.login(alice)
	pb.login(bob)
	pa.openRoom(room)
	pb.openRoom(lobby)

	// A mention of bob while he reads another room: counted in his list.
	pa.say("hello @" + bob.Username + ", look")
	roomButton := fmt.Sprintf(`#room-list [data-room="%s"]`, room)
	pb.waitJS("mention counted", fmt.Sprintf(`document.querySelector('%s .mentions')?.textContent === "@1"`, roomButton))
	pb.openRoom(room)
	pb.waitJS("mention count cleared", fmt.Sprintf(`!document.querySelector('%s .mentions')`, roomButton))
	first := `#messages li.msg[data-seq="1"]`
	pb.waitJS("mention marked", fmt.Sprintf(`document.querySelector('%s').classList.contains("mentions-me") && document.querySelector('%s .mention.to-me').textContent === %s`,
		first, first, js("@"+bob.Username)))

	// Bob reacts from the picker; Alice sees it and adds hers by the chip.
	pb.clickJS(first + " .react-open")
	pb.clickJS(first + ` .picker .pick[title="React with 👍"]`)
	chip := first + " .reaction"
	pa.waitJS("bob's reaction", fmt.Sprintf(`document.querySelector('%s .count')?.textContent === "1" && !document.querySelector('%s').classList.contains("mine")`, chip, chip))
	pa.clickJS(chip)
	pb.waitJS("two reactions", fmt.Sprintf(`document.querySelector('%s .count')?.textContent === "2"`, chip))
	pa.waitJS("mine marked", fmt.Sprintf(`document.querySelector('%s').classList.contains("mine")`, chip))
	pb.clickJS(chip) // bob takes his back
	pa.waitJS("one reaction left", fmt.Sprintf(`document.querySelector('%s .count')?.textContent === "1"`, chip))

	// Alice edits her message; only she has Edit and Delete.
	require.False(t, eval[bool](pb, fmt.Sprintf(`!!document.querySelector('%s .edit')`, first)))
	pa.clickJS(first + " .edit")
	pa.waitJS("editor", fmt.Sprintf(`document.activeElement === document.querySelector('%s .edit-body')`, first))
	pa.do(chromedp.Evaluate[chromedp.Void](`document.activeElement.value = ""`))
	pa.do(chromedp.SendKeys(chromedp.CSS(first+" .edit-body"), "hello, edited"), pressEnter(0))
	pb.waitJS("edit shown", fmt.Sprintf(`document.querySelector('%s .body').textContent === "hello, edited" && document.querySelector('%s .edited')`, first, first))
	pa.waitJS("edit shown to alice", fmt.Sprintf(`document.querySelector('%s .body').textContent === "hello, edited"`, first))

	// And deletes it: a tombstone for both, its reactions gone.
	pa.do(chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`))
	pa.clickJS(first + " .delete")
	for _, p := range []*tab{pa, pb} {
		p.waitJS("tombstone", fmt.Sprintf(`document.querySelector('%s .body.tombstone')?.textContent === "This message was deleted." && !document.querySelector('%s .reaction')`, first, first))
	}

	// While bob's server is down, alice (on another node) edits and
	// reacts to a second message; bob's tab resumes and shows both.
	pa.say("second")
	second := `#messages li.msg[data-seq="7"]` // after the message and its five updates
	pb.waitJS("second shown", fmt.Sprintf(`document.querySelector('%s .body')?.textContent === "second"`, second))
	msgID := eval[string](pb, fmt.Sprintf(`document.querySelector('%s').dataset.id`, second))
	other := newTestServerOn(t, db, nil)
	s.stop()
	pb.waitJS("reconnecting", `document.getElementById("conn").textContent.includes("reconnecting in")`)
	for _, r := range []struct {
		method, path string
		body         any
	}{
		{"PATCH", "/api/v1/messages/" + msgID, map[string]any{"body": "second, edited while away"}},
		{"PUT", "/api/v1/messages/" + msgID + "/reactions/" + url.PathEscape("🎉"), nil},
	} {
		res := other.do(t, r.method, r.path, alice.Token, r.body)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Raw)
	}
	newBrowserServer(t, db, addr, nil)
	pb.waitConnected()
	pb.waitJS("changes while away", fmt.Sprintf(`document.querySelector('%s .body').textContent === "second, edited while away" && document.querySelector('%s .edited') && document.querySelector('%s .reaction .emoji')?.textContent === "🎉"`, second, second, second))
	pb.waitJS("resume seq past the updates", fmt.Sprintf(`JSON.parse(localStorage.getItem("switchboard.seqs.%s") || "{}")[%s] === 9`, bob.ID, js(room)))

	// @ completion offers the room's members; Enter takes the choice
	// without sending, and the mention reaches alice marked.
	pb.do(chromedp.SendKeys(chromedp.ID("composer-input"), "thanks @"+alice.Username[:3]))
	pb.waitJS("completion", fmt.Sprintf(`document.querySelector('#composer .completion.active')?.dataset.username === %s`, js(alice.Username)))
	pb.do(pressEnter(0))
	pb.waitJS("completed", fmt.Sprintf(`document.getElementById("composer-input").value === %s`, js("thanks @"+alice.Username+" ")))
	pb.do(pressEnter(0))
	pa.waitConnected()
	pa.waitJS("mention of alice", `document.querySelector('#messages li.msg[data-seq="10"]')?.classList.contains("mentions-me")`)
}
