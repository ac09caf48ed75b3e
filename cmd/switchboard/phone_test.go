package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/integrations/twilio/twiliotest"
)

// Phone verification (SPEC §8) end to end: PATCH /api/v1/me, the code job
// through the real queue to the fake Twilio API, POST /api/v1/me/phone/verify,
// and what a verified number may then do.

var codeBody = regexp.MustCompile(`^Your Switchboard code is ([0-9]{6})$`)

// codesTo lists the verification codes the fake accepted for phone, oldest
// first.
func codesTo(fake *twiliotest.API, phone string) []string {
	var codes []string
	for _, m := range fake.Accepted() {
		if sub := codeBody.FindStringSubmatch(m.Body); m.To == phone && sub != nil {
			codes = append(codes, sub[1])
		}
	}
	return codes
}

// nthCode waits for the n-th code (from 1) to phone and returns it.
func nthCode(t *testing.T, fake *twiliotest.API, phone string, n int) string {
	t.Helper()
	var code string
	eventually(t, fmt.Sprintf("code %d to %s", n, phone), func() bool {
		codes := codesTo(fake, phone)
		if len(codes) < n {
			return false
		}
		code = codes[n-1]
		return true
	})
	return code
}

// otherCode is a well-formed code that is not code.
func otherCode(code string) string {
	n, _ := strconv.Atoi(code)
	return fmt.Sprintf("%06d", (n+1)%1_000_000)
}

// verifyPhone sets phone on u's profile and enters the code the fake Twilio
// received for it, as a person does.
func (s *testServer) verifyPhone(t *testing.T, fake *twiliotest.API, u testUser, phone string) {
	t.Helper()
	n := len(codesTo(fake, phone)) + 1
	s.setProfile(t, u, map[string]any{"phone": phone})
	r := s.enterCode(t, u, nthCode(t, fake, phone, n))
	require.Equal(t, http.StatusOK, r.Status, "verify: %s", r.Raw)
	require.Equal(t, true, r.Body["phone_verified"])
}

func (s *testServer) enterCode(t *testing.T, u testUser, code string) apiResponse {
	t.Helper()
	return s.do(t, "POST", "/api/v1/me/phone/verify", u.Token, map[string]any{"code": code})
}

func (s *testServer) me(t *testing.T, u testUser) apiProfile {
	t.Helper()
	r := s.do(t, "GET", "/api/v1/me", u.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "me: %s", r.Raw)
	return decodeBody[apiProfile](t, r)
}

// codeMade waits until the job of u's latest code ran (made its code, sent
// or not).
func (s *testServer) codeMade(t *testing.T, u testUser) {
	t.Helper()
	// Settled, not only claimed: marking the code sent sets its expiry
	// again, which would undo a test's change made between the two.
	eventually(t, "the code job ran", func() bool {
		var made bool
		err := s.node.pool.QueryRow(t.Context(), `
			SELECT code_hash IS NOT NULL AND claimed_until IS NULL FROM phone_codes
			 WHERE user_id = $1::bigint ORDER BY id DESC LIMIT 1`, u.ID).Scan(&made)
		return err == nil && made
	})
}

func TestPhoneCodeSentAndVerified(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice := s.register(t, "alice")
	const phone = "+15557770001"

	r := s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": phone, "sms_notify": true})
	require.Equal(t, http.StatusOK, r.Status, "patch: %s", r.Raw)
	require.Equal(t, phone, r.Body["phone"])
	require.Equal(t, false, r.Body["phone_verified"])
	code := nthCode(t, fake, phone, 1)
	require.Equal(t, []twiliotest.SMS{{To: phone, From: testTwilioFrom, Body: "Your Switchboard code is " + code}}, fake.Accepted())
	var plain int
	require.NoError(t, s.node.pool.QueryRow(t.Context(), `SELECT count(*) FROM phone_codes c WHERE c::text LIKE '%' || $1 || '%'`, code).Scan(&plain))
	require.Zero(t, plain, "the code is stored hashed")
	require.False(t, s.me(t, alice).PhoneVerified)

	r = s.enterCode(t, alice, otherCode(code))
	requireAPIError(t, r, http.StatusBadRequest, "bad_request")
	r = s.enterCode(t, alice, code)
	require.Equal(t, http.StatusOK, r.Status, "verify: %s", r.Raw)
	p := decodeBody[apiProfile](t, r)
	require.True(t, p.PhoneVerified)
	require.Equal(t, phone, *p.Phone)
	require.Equal(t, p, s.me(t, alice))

	// The verified number now posts by SMS.
	room := s.createRoom(t, alice, "public")
	status, twiml := s.smsWebhook(t, phone, "#"+s.roomName(t, alice, room)+" hello", "SMv1")
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, twiml, "<Message>")
	require.Equal(t, "hello", s.history(t, alice, room)[0]["body"])

	// The same number again changes nothing and sends nothing.
	r = s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": phone})
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, p, decodeBody[apiProfile](t, r))
	time.Sleep(500 * time.Millisecond)
	require.Len(t, fake.Accepted(), 1)

	// Clearing removes the number and its verification.
	r = s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": nil})
	require.Equal(t, http.StatusOK, r.Status)
	require.Nil(t, r.Body["phone"])
	require.Equal(t, false, r.Body["phone_verified"])
	status, twiml = s.smsWebhook(t, phone, "#"+s.roomName(t, alice, room)+" again", "SMv2")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, twiml, "not registered")
}

func TestPhoneFiveWrongCodesVoidTheCode(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice := s.register(t, "alice")
	const phone = "+15557770002"
	s.setProfile(t, alice, map[string]any{"phone": phone})
	code := nthCode(t, fake, phone, 1)

	var first apiResponse
	for i := range 5 {
		r := s.enterCode(t, alice, otherCode(code))
		requireAPIError(t, r, http.StatusBadRequest, "bad_request")
		if i == 0 {
			first = r
		}
		require.Equal(t, first.Raw, r.Raw, "every wrong code gets the same answer")
	}
	r := s.enterCode(t, alice, code)
	requireAPIError(t, r, http.StatusBadRequest, "bad_request")
	require.Contains(t, string(r.Raw), "void", "the right code is refused too")
	require.False(t, s.me(t, alice).PhoneVerified)

	// Setting the number again sends a new code, which works.
	s.setProfile(t, alice, map[string]any{"phone": phone})
	r = s.enterCode(t, alice, nthCode(t, fake, phone, 2))
	require.Equal(t, http.StatusOK, r.Status, "verify: %s", r.Raw)
	require.True(t, s.me(t, alice).PhoneVerified)
}

func TestPhoneCodeExpires(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice := s.register(t, "alice")
	const phone = "+15557770003"
	s.setProfile(t, alice, map[string]any{"phone": phone})
	code := nthCode(t, fake, phone, 1)
	s.codeMade(t, alice)
	// Ten minutes pass.
	_, err := s.node.pool.Exec(t.Context(), `UPDATE phone_codes SET expires_at = expires_at - interval '10 minutes'`)
	require.NoError(t, err)

	r := s.enterCode(t, alice, code)
	requireAPIError(t, r, http.StatusBadRequest, "bad_request")
	require.Contains(t, string(r.Raw), "expired")
	require.False(t, s.me(t, alice).PhoneVerified)
}

func TestPhoneCodesRateLimited(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice := s.register(t, "alice")
	phones := []string{"+15557770011", "+15557770012", "+15557770013", "+15557770014"}
	for _, phone := range phones[:3] {
		s.setProfile(t, alice, map[string]any{"phone": phone})
		nthCode(t, fake, phone, 1)
	}
	before := s.me(t, alice)

	r := s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": phones[3], "display_name": "Changed"})
	requireAPIError(t, r, http.StatusTooManyRequests, "rate_limited")
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", r.Header.Get("Retry-After"))
	require.InDelta(t, 3600, retry, 10, "the first code leaves the hour in an hour")
	require.Equal(t, before, s.me(t, alice), "the refused request changed nothing")
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, codesTo(fake, phones[3]))
	require.Len(t, fake.Accepted(), 3)

	// Asking for the same number again is a new code, and refused as well.
	r = s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": phones[2]})
	requireAPIError(t, r, http.StatusTooManyRequests, "rate_limited")
}

// TestPhoneVerifiedByAnotherAccount: mallory sets alice's verified number.
// Her PATCH reads as any other, the number's owner gets no SMS, and every
// code mallory tries, the one alice received included, is answered exactly
// as a wrong code is.
func TestPhoneVerifiedByAnotherAccount(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, mallory, carol := s.register(t, "alice"), s.register(t, "mallory"), s.register(t, "carol")
	const phone = "+15557770021"
	s.verifyPhone(t, fake, alice, phone)
	alicesCode := nthCode(t, fake, phone, 1)

	r := s.do(t, "PATCH", "/api/v1/me", mallory.Token, map[string]any{"phone": phone})
	require.Equal(t, http.StatusOK, r.Status, "patch: %s", r.Raw)
	require.Equal(t, phone, r.Body["phone"])
	require.Equal(t, false, r.Body["phone_verified"])
	s.codeMade(t, mallory)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, fake.Accepted(), 1, "no SMS to a number verified by another account")

	// Carol's wrong code on her own number is the reference answer.
	s.setProfile(t, carol, map[string]any{"phone": "+15557770022"})
	carolsCode := nthCode(t, fake, "+15557770022", 1)
	wrong := s.enterCode(t, carol, otherCode(carolsCode))
	requireAPIError(t, wrong, http.StatusBadRequest, "bad_request")

	for _, code := range []string{alicesCode, otherCode(alicesCode), "000000"} {
		r := s.enterCode(t, mallory, code)
		require.Equal(t, wrong.Status, r.Status)
		require.Equal(t, wrong.Header.Get("Content-Type"), r.Header.Get("Content-Type"))
		require.Equal(t, string(wrong.Raw), string(r.Raw))
	}
	require.False(t, s.me(t, mallory).PhoneVerified)

	// The number still speaks for alice.
	room := s.createRoom(t, alice, "public")
	status, _ := s.smsWebhook(t, phone, "#"+s.roomName(t, alice, room)+" still mine", "SMmine")
	require.Equal(t, http.StatusOK, status)
	h := s.history(t, alice, room)
	require.Len(t, h, 1)
	require.Equal(t, alice.ID, h[0]["sender"].(map[string]any)["id"])
}

// TestPhoneUnverifiedGetsNoNotification: bob and carol want SMS; carol's
// number is verified, bob's is not. A message gets carol an SMS and bob
// none.
func TestPhoneUnverifiedGetsNoNotification(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob, carol := s.register(t, "alice"), s.register(t, "bob"), s.register(t, "carol")
	room := s.createRoom(t, alice, "public")
	s.addMember(t, alice, room, bob)
	s.addMember(t, alice, room, carol)
	s.setProfile(t, bob, map[string]any{"phone": "+15557770031", "sms_notify": true})
	s.verifyPhone(t, fake, carol, "+15557770032")
	s.setProfile(t, carol, map[string]any{"sms_notify": true})
	nthCode(t, fake, "+15557770031", 1)

	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", alice.Token, map[string]any{"body": "anyone?"})
	require.Equal(t, http.StatusCreated, r.Status)
	notification := "[#" + s.roomName(t, alice, room) + "] " + alice.Username + ": anyone?"
	eventually(t, "carol's notification", func() bool {
		for _, m := range fake.Accepted() {
			if m.To == "+15557770032" && m.Body == notification {
				return true
			}
		}
		return false
	})
	time.Sleep(time.Second)
	for _, m := range fake.Accepted() {
		if m.To == "+15557770031" {
			require.Regexp(t, codeBody, m.Body, "bob's unverified number gets its code and nothing else")
		}
	}
}

func TestPhoneWithSMSOff(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice := s.register(t, "alice")
	r := s.do(t, "PATCH", "/api/v1/me", alice.Token, map[string]any{"phone": "+15557770041"})
	require.Equal(t, http.StatusOK, r.Status, "patch: %s", r.Raw)
	require.Equal(t, "+15557770041", r.Body["phone"])
	require.Equal(t, false, r.Body["phone_verified"])
	r = s.enterCode(t, alice, "123456")
	requireAPIError(t, r, http.StatusBadRequest, "bad_request")
	require.Contains(t, string(r.Raw), "no code")
	stats, err := s.node.queue.Stats(t.Context())
	require.NoError(t, err)
	for _, q := range stats {
		require.Zero(t, q.Pending+q.Scheduled+q.Retry+q.Dead+q.Processed, "nothing queued in %s", q.Queue)
	}
}

func TestPhoneVerifyBadInput(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, nil)
	alice := s.register(t, "alice")
	for _, body := range []any{
		map[string]any{"code": "12345"}, map[string]any{"code": "1234567"}, map[string]any{"code": "12345a"},
		map[string]any{"code": 123456}, map[string]any{}, map[string]any{"code": "123456", "phone": "+1"}, "not json",
	} {
		requireAPIError(t, s.do(t, "POST", "/api/v1/me/phone/verify", alice.Token, body), http.StatusBadRequest, "bad_request")
	}
	requireAPIError(t, s.do(t, "POST", "/api/v1/me/phone/verify", "", map[string]any{"code": "123456"}), http.StatusUnauthorized, "unauthorized")
}

func TestSMSInboundFromUnverifiedNumber(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	bob := s.register(t, "bob")
	room := s.createRoom(t, bob, "public")
	r := s.do(t, "POST", "/api/v1/rooms/"+room+"/messages", bob.Token, map[string]any{"body": "from the api"})
	require.Equal(t, http.StatusCreated, r.Status)
	const phone = "+15557770051"
	s.setProfile(t, bob, map[string]any{"phone": phone})
	nthCode(t, fake, phone, 1)

	for i, body := range []string{"#" + s.roomName(t, bob, room) + " by sms", "plain text"} {
		status, twiml := s.smsWebhook(t, phone, body, fmt.Sprintf("SMu%d", i))
		require.Equal(t, http.StatusOK, status)
		require.Contains(t, twiml, "This number is not registered with Switchboard.")
	}
	h := s.history(t, bob, room)
	require.Len(t, h, 1, "nothing stored from the unverified number")
	require.Equal(t, "from the api", h[0]["body"])
}

// TestSMSPlainTextNotRedirectedByBeingAdded is the attack of the security
// review: mallory adds the victim to her room, hoping that the victim's
// next plain-text SMS lands there. It goes where the victim last posted.
func TestSMSPlainTextNotRedirectedByBeingAdded(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	victim, mallory := s.register(t, "victim"), s.register(t, "mallory")
	const phone = "+15557770061"
	s.verifyPhone(t, fake, victim, phone)
	home := s.createRoom(t, victim, "private")
	r := s.do(t, "POST", "/api/v1/rooms/"+home+"/messages", victim.Token, map[string]any{"body": "notes to self"})
	require.Equal(t, http.StatusCreated, r.Status)

	trap := s.createRoom(t, mallory, "private")
	s.addMember(t, mallory, trap, victim)
	r = s.do(t, "POST", "/api/v1/rooms/"+trap+"/messages", mallory.Token, map[string]any{"body": "welcome!"})
	require.Equal(t, http.StatusCreated, r.Status)

	status, twiml := s.smsWebhook(t, phone, "my door code is 4711", "SMa1")
	require.Equal(t, http.StatusOK, status)
	require.NotContains(t, twiml, "<Message>")
	h := s.history(t, victim, home)
	require.Equal(t, "my door code is 4711", h[len(h)-1]["body"])
	for _, m := range s.history(t, mallory, trap) {
		require.NotEqual(t, "my door code is 4711", m["body"])
	}

	// Posting, from any client, is what moves it: the victim answers in
	// mallory's room from the browser, and the next plain text goes there.
	ws := s.dialWS(t, victim.Token)
	ws.ready()
	sendWS(t, ws, trap, "hi mallory")
	status, _ = s.smsWebhook(t, phone, "and by sms", "SMa2")
	require.Equal(t, http.StatusOK, status)
	h = s.history(t, mallory, trap)
	require.Equal(t, "and by sms", h[len(h)-1]["body"])
}

func TestSMSPlainTextNeverPostedGetsUsage(t *testing.T) {
	t.Parallel()
	fake := newFakeTwilio(t)
	s := newTestServerWith(t, nodeOptions{twilio: fake})
	alice, bob := s.register(t, "alice"), s.register(t, "bob")
	const phone = "+15557770071"
	s.verifyPhone(t, fake, alice, phone)
	own := s.createRoom(t, alice, "public")
	added := s.createRoom(t, bob, "private")
	s.addMember(t, bob, added, alice)

	status, twiml := s.smsWebhook(t, phone, "hello?", "SMn1")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, twiml, "your message&#34; to post in a room you are in. Plain text goes to the room you last posted in.")
	require.Empty(t, s.history(t, alice, own))
	require.Empty(t, s.history(t, alice, added))
}
