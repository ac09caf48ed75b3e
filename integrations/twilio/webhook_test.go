package twilio_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/internal/testvectors"
	"github.com/switchboard-chat/switchboard/poster"
	"github.com/switchboard-chat/switchboard/storage"
	"github.com/switchboard-chat/switchboard/storage/storagetest"
)

const (
	testToken = "test-auth-token"
	// testURL is the public URL the webhook is configured with; the test
	// server itself listens on 127.0.0.1, as behind a proxy.
	testURL = "https://chat.example.com/webhooks/twilio/sms"
)

type testBundle struct {
	*storagetest.Fixture
	srv *httptest.Server // the webhook configured with testToken and testURL
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	b := &testBundle{Fixture: storagetest.NewFixture(t)}
	b.srv = b.server(t, testToken, testURL)
	return b
}

// server starts the webhook configured with token and publicURL.
func (b *testBundle) server(t testing.TB, token, publicURL string) *httptest.Server {
	t.Helper()
	h, err := twilio.NewWebhook(twilio.WebhookConfig{
		AuthToken: token,
		URL:       publicURL,
		Store:     b.Store,
		Poster:    storagetest.NewPoster(t, b.Store),
		Logger:    slog.New(slog.NewTextHandler(t.Output(), nil)),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// user creates an account; a non-empty phone becomes its verified number.
func (b *testBundle) user(t testing.TB, name, phone string) chat.User {
	t.Helper()
	u := b.User(t, name)
	if phone != "" {
		storagetest.VerifyPhone(t, b.Pool, u.ID, phone)
	}
	return u
}

// notRegistered is the answer to an SMS from a number that is no
// account's verified phone.
const notRegistered = "This number is not registered with Switchboard. Add it as the phone of your account and verify it to post by SMS."

func ptr[T any](v T) *T { return &v }

// stored is a row of the messages table as the tests check it.
type stored = storagetest.StoredMessage

// sms posts an SMS as Twilio would, signed for testURL.
func (b *testBundle) sms(t testing.TB, from, body, sid string) answer {
	t.Helper()
	form := url.Values{
		"AccountSid": {"AC0123456789abcdef0123456789abcdef"}, "MessageSid": {sid}, "SmsSid": {sid},
		"From": {from}, "To": {"+15005550006"}, "Body": {body}, "NumMedia": {"0"},
	}
	sig := sign(testToken, testURL, form)
	return post(t, b.srv.URL, "application/x-www-form-urlencoded", []byte(form.Encode()), &sig)
}

// answer is the webhook's response.
type answer struct {
	Status    int
	MediaType string
	Raw       string
	// Reply is the text of the TwiML <Message>, "" for <Response/>.
	Reply string
}

// requireTwiML requires a 200 TwiML answer and returns its reply.
func (a answer) requireTwiML(t testing.TB) string {
	t.Helper()
	require.Equal(t, http.StatusOK, a.Status, "body: %s", a.Raw)
	require.Equal(t, "text/xml", a.MediaType)
	return a.Reply
}

func post(t testing.TB, target, contentType string, body []byte, sig *string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, target, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	if sig != nil {
		req.Header.Set("X-Twilio-Signature", *sig)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{Status: resp.StatusCode, Raw: string(raw)}
	a.MediaType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if a.MediaType == "text/xml" {
		var doc struct {
			XMLName  xml.Name `xml:"Response"`
			Messages []string `xml:"Message"`
		}
		require.NoError(t, xml.Unmarshal(raw, &doc), "TwiML: %s", raw)
		require.LessOrEqual(t, len(doc.Messages), 1, "TwiML: %s", raw)
		if len(doc.Messages) == 1 {
			a.Reply = doc.Messages[0]
			require.NotEmpty(t, a.Reply)
		}
	}
	return a
}

// sign computes X-Twilio-Signature as Twilio's documentation gives it
// (HMAC-SHA1 of the URL followed by each parameter's name and value, sorted
// by name, in base64): the test's own oracle, checked against the published
// vectors in TestSignOracle.
func sign(token, rawURL string, params url.Values) string {
	var s strings.Builder
	s.WriteString(rawURL)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		for _, v := range slices.Sorted(slices.Values(params[k])) {
			s.WriteString(k + v)
		}
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(s.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

func TestSignOracle(t *testing.T) {
	t.Parallel()
	// The valid vectors signed over their URL exactly as given (not with a
	// port added or removed), with a form body, and without the repeated
	// identical value that only twilio-node removes.
	verbatim := []string{
		"sdk_default", "docs_page_example", "http_port_1234", "repeated_param_Digits",
		"array_param_order_independent", "array_param_order_independent_reversed",
		"url_with_credentials", "url_with_username_only", "query_with_special_chars",
	}
	checked := 0
	for _, v := range testvectors.Twilio(t) {
		if slices.Contains(verbatim, v.Name) {
			require.True(t, v.Valid, v.Name)
			require.Equal(t, v.Signature, sign(v.AuthToken, v.URL, v.Params), v.Name)
			checked++
		}
	}
	require.Equal(t, len(verbatim), checked)
}

// unsupportedVectors are the published vectors that twilio-go v1.31.0's
// RequestValidator refuses although Twilio's other SDKs accept them, with
// the reason. The webhook answers them 403. Twilio's SMS webhook sends no
// repeated parameters, so this costs nothing in practice.
var unsupportedVectors = map[string]string{
	"repeated_param_Digits":                  "a repeated parameter: twilio-go signs only the first value of each name",
	"repeated_param_Digits_with_duplicate":   "a repeated parameter: twilio-go signs only the first value of each name",
	"array_param_order_independent":          "a repeated parameter: twilio-go signs only the first value of each name",
	"array_param_order_independent_reversed": "a repeated parameter: twilio-go signs only the first value of each name",
}

func TestWebhookSignatureVectors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	vectors := testvectors.Twilio(t)
	require.Len(t, vectors, 22)
	for _, v := range vectors {
		t.Run(v.Name, func(t *testing.T) {
			// The webhook is configured with the vector's URL and token, so
			// each vector goes through the handler's own validation.
			srv := b.server(t, v.AuthToken, v.URL)
			var sig *string
			if v.HasHeader {
				sig = &v.Signature
			}
			a := post(t, srv.URL, v.ContentType, v.Body, sig)
			reason, unsupported := unsupportedVectors[v.Name]
			switch {
			case unsupported:
				require.True(t, v.Valid, "only valid vectors are listed as unsupported")
				require.Equal(t, http.StatusForbidden, a.Status, "%s: twilio-go now accepts it; drop it from unsupportedVectors", v.Name)
				t.Logf("not validated by twilio-go: %s", reason)
			case v.Valid:
				// Signed, but no account has the sender's number.
				require.Contains(t, a.requireTwiML(t), "not registered")
			default:
				require.Equal(t, http.StatusForbidden, a.Status, "body: %s", a.Raw)
				require.Equal(t, "application/json", a.MediaType)
				require.Contains(t, a.Raw, `"code":"forbidden"`)
			}
		})
	}
	require.Empty(t, b.Stored(t, chat.SourceSMS))
}

func TestWebhook(t *testing.T) {
	t.Parallel()

	t.Run("PostToNamedRoom", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Room(t, alice, "general", chat.Public)
		b.Room(t, alice, "Random", chat.Private)

		require.Empty(t, b.sms(t, "+14155550100", "#general hello from my phone", "SM001").requireTwiML(t))
		// Room names match in any letter case; text after the name keeps its
		// inner spacing but is trimmed.
		require.Empty(t, b.sms(t, "+14155550100", "  #random   two  words \n", "SM002").requireTwiML(t))

		require.Equal(t, []stored{
			{Room: "general", Sender: "alice", Body: "hello from my phone", Source: "sms", ExternalID: "SM001"},
			{Room: "Random", Sender: "alice", Body: "two  words", Source: "sms", ExternalID: "SM002"},
		}, b.Stored(t, chat.SourceSMS))
	})

	t.Run("PlainTextGoesToLastActiveRoom", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		bob := b.user(t, "bob", "")
		general := b.Room(t, alice, "general", chat.Public)
		random := b.Room(t, alice, "random", chat.Public)
		_, _, err := b.Store.Join(b.Ctx, bob.ID, general.ID)
		require.NoError(t, err)

		b.Say(t, general, alice, "from the web")
		require.Empty(t, b.sms(t, "+14155550100", "first", "SM1").requireTwiML(t))
		b.Say(t, random, alice, "now here")
		require.Empty(t, b.sms(t, "+14155550100", "second", "SM2").requireTwiML(t))
		// Another member's post does not move alice's room.
		b.Say(t, general, bob, "bob speaks")
		require.Empty(t, b.sms(t, "+14155550100", "third", "SM3").requireTwiML(t))
		// An SMS to a named room makes it the active one.
		require.Empty(t, b.sms(t, "+14155550100", "#general fourth", "SM4").requireTwiML(t))
		require.Empty(t, b.sms(t, "+14155550100", "fifth", "SM5").requireTwiML(t))

		var got []string
		for _, s := range b.Stored(t, chat.SourceSMS) {
			got = append(got, s.Room+":"+s.Body)
		}
		require.Equal(t, []string{"general:first", "random:second", "random:third", "general:fourth", "general:fifth"}, got)
	})

	t.Run("NotAMember", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		bob := b.user(t, "bob", "+14155550101")
		b.Room(t, alice, "general", chat.Public)
		b.Room(t, alice, "secret", chat.Private)
		b.Room(t, bob, "bobs", chat.Public)

		// A public room bob is not in, a private one, and one that does not
		// exist all get the same answer, so private rooms stay hidden.
		for _, name := range []string{"general", "secret", "nowhere"} {
			reply := b.sms(t, "+14155550101", "#"+name+" hi", "SM-"+name).requireTwiML(t)
			require.Equal(t, "You are not in a room named #"+name+".", reply)
			reply = b.sms(t, "+14155550101", "#"+name+" ?", "SM-recent-"+name).requireTwiML(t)
			require.Equal(t, "You are not in a room named #"+name+".", reply)
		}
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("Recent", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		bob := b.user(t, "bob", "")
		general := b.Room(t, alice, "General", chat.Public)
		_, _, err := b.Store.Join(b.Ctx, bob.ID, general.ID)
		require.NoError(t, err)

		require.Equal(t, "#General has no messages yet.", b.sms(t, "+14155550100", "#general ?", "SM0").requireTwiML(t))

		for i := 1; i <= 7; i++ {
			sender := alice
			if i%2 == 0 {
				sender = bob
			}
			m := b.Say(t, general, sender, fmt.Sprintf("message %d", i))
			if i == 6 { // deleted (SPEC §13): left out
				_, _, err := b.Store.UpdateMessage(b.Ctx, chat.Update{Action: chat.ActionDelete, MessageID: m.ID, UserID: bob.ID})
				require.NoError(t, err)
			}
		}
		b.Say(t, general, bob, "a long one\non two lines "+strings.Repeat("x", 200))

		reply := b.sms(t, "+14155550100", "#general ?", "SM1").requireTwiML(t)
		require.Equal(t, strings.Join([]string{
			"#General, latest:",
			"alice: message 3",
			"bob: message 4",
			"alice: message 5",
			"alice: message 7",
			// 100 characters on one line, the last one an ellipsis.
			"bob: a long one on two lines " + strings.Repeat("x", 100-1-len("a long one on two lines ")) + "…",
		}, "\n"), reply)
		require.Empty(t, b.Stored(t, chat.SourceSMS), "asking for recent messages stores nothing")
	})

	t.Run("UnknownNumber", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Room(t, alice, "general", chat.Public)

		for _, from := range []string{"+14155550199", "", "14155550100"} {
			reply := b.sms(t, from, "#general hello", "SM-"+from).requireTwiML(t)
			require.Equal(t, notRegistered, reply)
		}
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("UnverifiedNumberIsUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "")
		general := b.Room(t, alice, "general", chat.Public)
		b.Say(t, general, alice, "from the web")
		// alice set the number but never entered its code; bob holds it
		// unverified too.
		bob := b.user(t, "bob", "")
		for _, u := range []chat.User{alice, bob} {
			_, err := b.Store.UpdateProfile(b.Ctx, u.ID, chat.ProfileUpdate{Phone: ptr("+14155550100")})
			require.NoError(t, err)
		}

		for i, body := range []string{"#general hello", "hello", "#general ?"} {
			reply := b.sms(t, "+14155550100", body, fmt.Sprintf("SM%d", i)).requireTwiML(t)
			require.Equal(t, notRegistered, reply, body)
		}
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("NeverPostedGetsUsage", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		bob := b.user(t, "bob", "")
		const usage = `Send "#room-name your message" to post in a room you are in. Plain text goes to the room you last posted in.`
		require.Equal(t, usage, b.sms(t, "+14155550100", "anyone there?", "SM1").requireTwiML(t), "in no room")

		// Creating a room, joining one or being added to one is not posting.
		b.Room(t, alice, "mine", chat.Public)
		theirs := b.Room(t, bob, "theirs", chat.Public)
		_, _, err := b.Store.Join(b.Ctx, alice.ID, theirs.ID)
		require.NoError(t, err)
		added := b.Room(t, bob, "added", chat.Private)
		_, _, err = b.Store.AddMember(b.Ctx, bob.ID, added.ID, "alice")
		require.NoError(t, err)
		b.Say(t, added, bob, "welcome")
		require.Equal(t, usage, b.sms(t, "+14155550100", "anyone there?", "SM2").requireTwiML(t), "in rooms, never posted")
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("BeingAddedDoesNotRedirectPlainText", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		victim := b.user(t, "victim", "+14155550100")
		mallory := b.user(t, "mallory", "")
		home := b.Room(t, victim, "home", chat.Private)
		b.Say(t, home, victim, "from the web")
		// Mallory adds the victim to her room and talks there, hoping to
		// receive the victim's next plain-text SMS.
		trap := b.Room(t, mallory, "trap", chat.Private)
		_, _, err := b.Store.AddMember(b.Ctx, mallory.ID, trap.ID, "victim")
		require.NoError(t, err)
		b.Say(t, trap, mallory, "hello victim")

		require.Empty(t, b.sms(t, "+14155550100", "private note", "SM1").requireTwiML(t))
		require.Equal(t, []stored{{Room: "home", Sender: "victim", Body: "private note", Source: "sms", ExternalID: "SM1"}},
			b.Stored(t, chat.SourceSMS))
	})

	t.Run("RoomNameWithoutText", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Room(t, alice, "general", chat.Public)
		reply := b.sms(t, "+14155550100", "#general", "SM1").requireTwiML(t)
		require.Equal(t, `Write your message after #general, or send "#general ?" for its latest messages.`, reply)
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("RetriedMessageSidStoredOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		general := b.Room(t, alice, "general", chat.Public)
		random := b.Room(t, alice, "random", chat.Public)
		b.Say(t, general, alice, "hi")

		first := b.sms(t, "+14155550100", "only once", "SMretry")
		require.Empty(t, first.requireTwiML(t))
		// Between Twilio's attempts alice posts elsewhere: the retry still
		// finds the first message and stores nothing.
		b.Say(t, random, alice, "meanwhile")
		for range 3 {
			again := b.sms(t, "+14155550100", "only once", "SMretry")
			require.Equal(t, first.Raw, again.Raw)
			require.Empty(t, again.requireTwiML(t))
		}
		require.Equal(t, []stored{{Room: "general", Sender: "alice", Body: "only once", Source: "sms", ExternalID: "SMretry"}},
			b.Stored(t, chat.SourceSMS))
	})

	t.Run("BadBody", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Say(t, b.Room(t, alice, "general", chat.Public), alice, "plain text goes here")

		tests := []struct {
			name, body, reply string
		}{
			{name: "Empty", body: "  ", reply: "Not sent: body is empty."},
			{name: "InvalidUTF8", body: "#general caf\xe9", reply: "Not sent: body is not valid UTF-8."},
			{name: "NUL", body: "a\x00b", reply: "Not sent: body contains a NUL character."},
			{name: "TooLong", body: strings.Repeat("é", 4001), reply: "Not sent: body has 4001 characters; the limit is 4000."},
			{name: "TooLongAfterRoom", body: "#general " + strings.Repeat("a", 4001), reply: "Not sent: body has 4001 characters; the limit is 4000."},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				require.Equal(t, tt.reply, b.sms(t, "+14155550100", tt.body, "SM-"+tt.name).requireTwiML(t))
			})
		}
		// The longest body that fits is stored.
		require.Empty(t, b.sms(t, "+14155550100", strings.Repeat("é", 4000), "SM-max").requireTwiML(t))
		require.Len(t, b.Stored(t, chat.SourceSMS), 1)
	})

	t.Run("RepliesAreEscaped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		general := b.Room(t, alice, "general", chat.Public)
		b.Say(t, general, alice, `</Message><Redirect>https://evil.example</Redirect> & "quotes"`)

		a := b.sms(t, "+14155550100", "#general ?", "SM1")
		require.Equal(t, "#general, latest:\nalice: </Message><Redirect>https://evil.example</Redirect> & \"quotes\"", a.requireTwiML(t))
		require.NotContains(t, a.Raw, "<Redirect>")
	})

	t.Run("BehindProxy", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Room(t, alice, "general", chat.Public)
		form := url.Values{"From": {"+14155550100"}, "Body": {"#general via proxy"}, "MessageSid": {"SMproxy"}}

		// The request reaches 127.0.0.1 with the proxy's Host header; the
		// signature over the public URL is the valid one.
		sig := sign(testToken, testURL, form)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.srv.URL+"/internal/path", strings.NewReader(form.Encode()))
		require.NoError(t, err)
		req.Host = "10.0.0.7:8080"
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)

		// A signature over the URL the request was addressed to (its Host
		// header and path) is not Twilio's: 403.
		for _, u := range []string{b.srv.URL + "/webhooks/twilio/sms", "http://10.0.0.7:8080/internal/path"} {
			sig := sign(testToken, u, form)
			a := post(t, b.srv.URL+"/webhooks/twilio/sms", "application/x-www-form-urlencoded", []byte(form.Encode()), &sig)
			require.Equal(t, http.StatusForbidden, a.Status, u)
		}
		// A wrong token, and a tampered body under a good signature.
		sig = sign("another-token", testURL, form)
		require.Equal(t, http.StatusForbidden, post(t, b.srv.URL, "application/x-www-form-urlencoded", []byte(form.Encode()), &sig).Status)
		sig = sign(testToken, testURL, form)
		tampered := url.Values{"From": {"+14155550100"}, "Body": {"#general tampered"}, "MessageSid": {"SMproxy2"}}
		require.Equal(t, http.StatusForbidden, post(t, b.srv.URL, "application/x-www-form-urlencoded", []byte(tampered.Encode()), &sig).Status)

		require.Equal(t, []stored{{Room: "general", Sender: "alice", Body: "via proxy", Source: "sms", ExternalID: "SMproxy"}},
			b.Stored(t, chat.SourceSMS))
	})

	t.Run("SizeLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		alice := b.user(t, "alice", "+14155550100")
		b.Say(t, b.Room(t, alice, "general", chat.Public), alice, "plain text goes here")

		// Just under 64 KiB is read (and answered: the text is too long).
		form := url.Values{"From": {"+14155550100"}, "MessageSid": {"SMbig"}}
		form.Set("Body", strings.Repeat("a", 64<<10-len(form.Encode())-len("&Body=")))
		require.Len(t, form.Encode(), 64<<10)
		sig := sign(testToken, testURL, form)
		a := post(t, b.srv.URL, "application/x-www-form-urlencoded", []byte(form.Encode()), &sig)
		require.Contains(t, a.requireTwiML(t), "the limit is 4000")

		// One byte more is refused before anything else.
		form.Set("Body", form.Get("Body")+"a")
		sig = sign(testToken, testURL, form)
		a = post(t, b.srv.URL, "application/x-www-form-urlencoded", []byte(form.Encode()), &sig)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.Status)
		require.Contains(t, a.Raw, `"code":"too_large"`)
		require.Empty(t, b.Stored(t, chat.SourceSMS))
	})

	t.Run("PostOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, err := http.Get(b.srv.URL)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		require.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
	})

	t.Run("Config", func(t *testing.T) {
		t.Parallel()
		store := storage.New(nil)
		good := twilio.WebhookConfig{AuthToken: "t", URL: testURL, Store: store, Poster: storagetest.NewPoster(t, store)}
		_, err := twilio.NewWebhook(good)
		require.NoError(t, err)
		for name, mutate := range map[string]func(*twilio.WebhookConfig){
			"NoToken":     func(c *twilio.WebhookConfig) { c.AuthToken = "" },
			"NoURL":       func(c *twilio.WebhookConfig) { c.URL = "" },
			"RelativeURL": func(c *twilio.WebhookConfig) { c.URL = "/webhooks/twilio/sms" },
			"NoStore":     func(c *twilio.WebhookConfig) { c.Store = nil },
			"NoPoster":    func(c *twilio.WebhookConfig) { c.Poster = nil },
		} {
			cfg := good
			mutate(&cfg)
			_, err := twilio.NewWebhook(cfg)
			require.Error(t, err, name)
		}
	})
}

// The server wires the real store and hub into the webhook.
var (
	_ twilio.Store  = (*storage.Store)(nil)
	_ twilio.Poster = (*poster.Poster)(nil)
)
