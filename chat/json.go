package chat

import (
	"bytes"
	"unicode/utf16"
)

// CheckJSONEscapes returns a bad_request *Error when the JSON text data
// holds a \u escape of an unpaired UTF-16 surrogate: a high surrogate
// (\ud800-\udbff) not followed at once by an escaped low one
// (\udc00-\udfff), or a low surrogate with no high one before it.
// encoding/json would decode such an escape as U+FFFD without a word, and
// SPEC §2 refuses it as invalid UTF-8. A pair, "\ud83d\ude00", is one
// character (😀) and passes.
//
// It looks at escapes only: an escaped backslash is skipped as a whole, so
// "\\ud800" (the six characters \ud800) passes. Anything else that is not
// JSON, malformed escapes included, is left to the decoder that reads data
// afterwards.
func CheckJSONEscapes(data []byte) error {
	for i := 0; i < len(data); i++ {
		next := bytes.IndexByte(data[i:], '\\') // most text has no escape at all
		if next < 0 {
			return nil
		}
		i += next
		r, ok := unicodeEscape(data[i:])
		if !ok {
			i++ // the escaped character, whatever it is, is not an escape itself
			continue
		}
		switch {
		case !utf16.IsSurrogate(r):
		case r < 0xdc00: // high: the next escape must be its low half
			low, ok := unicodeEscape(data[i+6:])
			if !ok || utf16.DecodeRune(r, low) == '\uFFFD' {
				return errLoneSurrogate
			}
			i += 6
		default:
			return errLoneSurrogate
		}
		i += 5
	}
	return nil
}

var errLoneSurrogate = Errorf(CodeBadRequest, `JSON is not valid UTF-8: it holds a lone surrogate escape such as "\ud800"`)

// unicodeEscape decodes the \uXXXX escape that b starts with.
func unicodeEscape(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	var r rune
	for _, c := range b[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
