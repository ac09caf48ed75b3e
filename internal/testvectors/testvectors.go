// Package testvectors loads the published test vectors kept in the
// repository's testdata/ directory (see testdata/README.md) for the tests of
// every package, so that each file is found and parsed in one place. Tests
// only: it fails the test when a file is missing rather than skipping.
package testvectors

import (
	"encoding/hex"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Path returns the path of a file in the repository's testdata/ directory.
// It is found from this source file's own location, so it does not depend
// on the directory a test runs in.
func Path(name string) string {
	_, here, _, _ := runtime.Caller(0) // <repo>/internal/testvectors/testvectors.go
	root := filepath.Join(filepath.Dir(here), "..", "..")
	return filepath.Join(root, "testdata", name)
}

// UTF8Case is one payload of Autobahn cases 6.5–6.23.
type UTF8Case struct {
	ID      string // e.g. "6.5.1"
	Valid   bool   // whether Payload is valid UTF-8
	Payload []byte
}

// AutobahnUTF8 returns the 132 payloads of autobahn_utf8_6x.json, sorted by
// case id.
func AutobahnUTF8(tb testing.TB) []UTF8Case {
	tb.Helper()
	var file struct {
		Cases map[string]struct {
			Valid      bool   `json:"valid_utf8"`
			PayloadHex string `json:"payload_hex"`
		} `json:"cases"`
	}
	load(tb, "autobahn_utf8_6x.json", &file)
	out := make([]UTF8Case, 0, len(file.Cases))
	for id, c := range file.Cases {
		p, err := hex.DecodeString(c.PayloadHex)
		if err != nil {
			tb.Fatalf("testvectors: case %s: %v", id, err)
		}
		out = append(out, UTF8Case{ID: id, Valid: c.Valid, Payload: p})
	}
	slices.SortFunc(out, func(a, b UTF8Case) int { return strings.Compare(a.ID, b.ID) })
	if len(out) != 132 {
		tb.Fatalf("testvectors: autobahn_utf8_6x.json has %d cases, want 132", len(out))
	}
	return out
}

// TwilioVector is one X-Twilio-Signature case of twilio.json.
type TwilioVector struct {
	Name      string
	AuthToken string
	URL       string // the URL Twilio signed, verbatim
	// Body is the raw request body: the JSON body when the vector has one,
	// else Params form-encoded.
	Body        []byte
	Params      url.Values
	ContentType string
	Signature   string // the X-Twilio-Signature header
	HasHeader   bool   // false: the header is absent
	Valid       bool
	Note        string
}

// Twilio returns the signature vectors of twilio.json in file order.
func Twilio(tb testing.TB) []TwilioVector {
	tb.Helper()
	var file struct {
		Vectors []struct {
			Name        string                     `json:"name"`
			AuthToken   string                     `json:"auth_token"`
			URL         string                     `json:"url"`
			Params      map[string]json.RawMessage `json:"params"`
			Body        *string                    `json:"body"`
			ContentType string                     `json:"content_type"`
			Signature   *string                    `json:"x_twilio_signature"`
			Expect      string                     `json:"expect"`
			Note        string                     `json:"note"`
		} `json:"vectors"`
	}
	load(tb, "twilio.json", &file)
	out := make([]TwilioVector, 0, len(file.Vectors))
	for _, v := range file.Vectors {
		tv := TwilioVector{
			Name: v.Name, AuthToken: v.AuthToken, URL: v.URL, Params: url.Values{},
			ContentType: v.ContentType, HasHeader: v.Signature != nil, Note: v.Note,
		}
		// A parameter is a string or, repeated, a list of strings.
		for k, raw := range v.Params {
			var one string
			if json.Unmarshal(raw, &one) == nil {
				tv.Params.Add(k, one)
				continue
			}
			var many []string
			if err := json.Unmarshal(raw, &many); err != nil {
				tb.Fatalf("testvectors: twilio.json %s: param %s: %v", v.Name, k, err)
			}
			tv.Params[k] = many
		}
		if v.Body != nil {
			tv.Body = []byte(*v.Body)
		} else {
			tv.Body = []byte(tv.Params.Encode())
		}
		if v.Signature != nil {
			tv.Signature = *v.Signature
		}
		switch v.Expect {
		case "valid":
			tv.Valid = true
		case "invalid":
		default:
			tb.Fatalf("testvectors: twilio.json %s: expect %q", v.Name, v.Expect)
		}
		out = append(out, tv)
	}
	if len(out) == 0 {
		tb.Fatalf("testvectors: twilio.json has no vectors")
	}
	return out
}

// SlackSignature is one X-Slack-Signature case of slack.json.
type SlackSignature struct {
	Name          string
	SigningSecret string
	Timestamp     string // X-Slack-Request-Timestamp; "" when absent
	RawBody       []byte
	ContentType   string // "" when the file does not say
	Signature     string // X-Slack-Signature
	// Match is whether the signature matches; nil when the file leaves it
	// to the implementation (MatchNote says why).
	Match     *bool
	MatchNote string
}

// SlackFile is what the Slack tests use from slack.json.
type SlackFile struct {
	Signatures []SlackSignature
	// Challenge is the challenge of the documented url_verification body.
	Challenge string
	// MessageEvent is the documented event_callback of a message in a
	// channel (message.channels).
	MessageEvent json.RawMessage
}

// Slack loads slack.json.
func Slack(tb testing.TB) SlackFile {
	tb.Helper()
	var file struct {
		Signatures []struct {
			Name          string          `json:"name"`
			SigningSecret string          `json:"signing_secret"`
			Timestamp     *string         `json:"timestamp"`
			RawBody       string          `json:"raw_body"`
			ContentType   string          `json:"content_type"`
			Signature     string          `json:"x_slack_signature"`
			Match         json.RawMessage `json:"expect_signature_match"`
		} `json:"signature_vectors"`
		URLVerification struct {
			RequestBody struct {
				Challenge string `json:"challenge"`
			} `json:"request_body"`
		} `json:"url_verification"`
		MessageEvent json.RawMessage `json:"event_callback_message_channels_docs"`
	}
	load(tb, "slack.json", &file)
	out := SlackFile{Challenge: file.URLVerification.RequestBody.Challenge, MessageEvent: file.MessageEvent}
	for _, v := range file.Signatures {
		s := SlackSignature{
			Name: v.Name, SigningSecret: v.SigningSecret, RawBody: []byte(v.RawBody),
			ContentType: v.ContentType, Signature: v.Signature,
		}
		if v.Timestamp != nil {
			s.Timestamp = *v.Timestamp
		}
		var match bool
		if err := json.Unmarshal(v.Match, &match); err == nil {
			s.Match = &match
		} else if err := json.Unmarshal(v.Match, &s.MatchNote); err != nil {
			tb.Fatalf("testvectors: slack.json %s: expect_signature_match: %v", v.Name, err)
		}
		out.Signatures = append(out.Signatures, s)
	}
	if len(out.Signatures) == 0 || out.Challenge == "" || len(out.MessageEvent) == 0 {
		tb.Fatalf("testvectors: slack.json lacks signature vectors, the url_verification challenge or the message event")
	}
	return out
}

func load(tb testing.TB, name string, v any) {
	tb.Helper()
	raw, err := os.ReadFile(Path(name))
	if err != nil {
		tb.Fatalf("testvectors: %v", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		tb.Fatalf("testvectors: %s: %v", name, err)
	}
}
