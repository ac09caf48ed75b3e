package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"math"
	"math/big"

	"github.com/switchboard-chat/switchboard/chat"
)

// NewPhoneCode returns a fresh phone verification code (SPEC §8):
// chat.PhoneCodeDigits random decimal digits, every code equally likely.
func NewPhoneCode() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(math.Pow10(chat.PhoneCodeDigits)))) // never fails (crypto/rand documents it)
	return fmt.Sprintf("%0*d", chat.PhoneCodeDigits, n)
}

// HashPhoneCode is the stored form of a verification code sent to userID:
// HMAC-SHA256 under a key derived from the JWT secret, which every node and
// worker shares. A code has a million values, so any unkeyed hash in a
// leaked table would give it away; this one tells nothing without the key.
func (t *Tokens) HashPhoneCode(userID, code string) []byte {
	m := hmac.New(sha256.New, t.codeKey)
	m.Write([]byte(userID))
	m.Write([]byte{0})
	m.Write([]byte(code))
	return m.Sum(nil)
}
