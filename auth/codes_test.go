package auth_test

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/auth"
)

func TestPhoneCodes(t *testing.T) {
	t.Parallel()

	t.Run("SixRandomDigits", func(t *testing.T) {
		t.Parallel()
		seen := map[string]bool{}
		for range 200 {
			code := auth.NewPhoneCode()
			require.Regexp(t, regexp.MustCompile(`^[0-9]{6}$`), code)
			seen[code] = true
		}
		require.Greater(t, len(seen), 190, "codes repeat far more than chance")
	})

	t.Run("HashIsKeyedAndBound", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		h := b.tokens.HashPhoneCode("42", "123456")
		require.Equal(t, h, b.tokens.HashPhoneCode("42", "123456"), "the same code hashes the same")
		require.NotEqual(t, h, b.tokens.HashPhoneCode("42", "123457"))
		require.NotEqual(t, h, b.tokens.HashPhoneCode("43", "123456"), "a code is bound to its account")
		other, err := auth.New(auth.Config{Secret: []byte("another secret, another key!")})
		require.NoError(t, err)
		require.NotEqual(t, h, other.HashPhoneCode("42", "123456"), "without the secret the hash cannot be computed")
		require.NotContains(t, string(h), "123456")
	})
}
