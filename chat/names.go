package chat

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxDisplayNameChars is the longest display name (SPEC §3), in characters.
const MaxDisplayNameChars = 64

// SlackGuestPrefix starts the username of every Slack guest account
// (SPEC §9): no one may register a username that begins with it (SPEC §3).
const SlackGuestPrefix = "slack-"

var usernamePattern = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)

// ValidUsername reports whether name has the form of a username (SPEC §3):
// 3–32 characters of a–z, 0–9, '_', '.' and '-'. Usernames are stored in
// lower case, so lower-case what a person typed before asking. Slack
// guests' usernames have this form too.
func ValidUsername(name string) bool { return usernamePattern.MatchString(name) }

// NewUsername returns the username of a new account that asked for name
// (register, switchboard users create): name in lower case. It is a
// bad_request *Error unless the result is a ValidUsername that does not
// begin with SlackGuestPrefix.
func NewUsername(name string) (string, error) {
	name = strings.ToLower(name)
	switch {
	case !ValidUsername(name):
		return "", Errorf(CodeBadRequest, "username must be 3-32 characters of a-z, 0-9, _ . -")
	case strings.HasPrefix(name, SlackGuestPrefix):
		return "", Errorf(CodeBadRequest, "usernames beginning %q are reserved for Slack guests", SlackGuestPrefix)
	}
	return name, nil
}

// NormalizeDisplayName trims white space from around name and checks the
// rules of SPEC §3: valid UTF-8; 1–64 characters; no control characters; no
// bidirectional overrides or isolates (U+202A–U+202E, U+2066–U+2069), which
// would reorder the text shown after the name; and not made only of
// characters that show nothing (see invisible). Every way of setting a
// display name goes through it.
func NormalizeDisplayName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", Errorf(CodeBadRequest, "display_name is not valid UTF-8")
	}
	name = strings.TrimSpace(name)
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", Errorf(CodeBadRequest, "display_name must not contain control characters")
	}
	if strings.IndexFunc(name, bidiControl) >= 0 {
		return "", Errorf(CodeBadRequest, "display_name must not contain bidirectional overrides or isolates (U+202A-U+202E, U+2066-U+2069)")
	}
	if n := utf8.RuneCountInString(name); n == 0 || n > MaxDisplayNameChars {
		return "", Errorf(CodeBadRequest, "display_name must be 1-%d characters", MaxDisplayNameChars)
	}
	if onlyInvisible(name) {
		return "", Errorf(CodeBadRequest, "display_name must have a visible character")
	}
	return name, nil
}

// bidiControl reports the bidirectional embeddings and overrides
// (U+202A–U+202E) and isolates (U+2066–U+2069).
func bidiControl(r rune) bool {
	return ('\u202a' <= r && r <= '\u202e') || ('\u2066' <= r && r <= '\u2069')
}

// invisible reports whether r shows nothing by itself: white space, and
// Unicode's default ignorable code points, which are drawn as nothing when
// they have no effect on their neighbours. That holds the characters SPEC §3
// names (U+200B–U+200D, U+2060, U+00AD, U+FEFF) and their kin: the other
// zero-width and directional marks, variation selectors, tag characters and
// fillers such as U+3164. A display name or a message body made only of
// such characters is refused.
func invisible(r rune) bool {
	if unicode.IsSpace(r) {
		return true
	}
	// Default_Ignorable_Code_Point, as Unicode derives it (DerivedCoreProperties.txt).
	if unicode.Is(unicode.Prepended_Concatenation_Mark, r) || ('\ufff9' <= r && r <= '\ufffb') || (0x13430 <= r && r <= 0x1343f) {
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Variation_Selector, unicode.Other_Default_Ignorable_Code_Point)
}

// onlyInvisible reports whether every character of s is invisible (true for
// "").
func onlyInvisible(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return !invisible(r) }) < 0
}
