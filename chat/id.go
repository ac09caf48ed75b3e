package chat

import "strconv"

// ParseID returns the key behind an id the server issued (SPEC §2). Ids are
// positive decimal numbers written the one way the server writes them: no
// sign, no leading zero, no space. Any other spelling of the same number
// ("013", "+13", " 13") names nothing, so that one object never has two
// names: every map, cache and subscription keyed by an id string stays
// exact.
func ParseID(id string) (int64, bool) {
	if id == "" || id[0] < '1' || id[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// FormatID writes a key as the id clients see.
func FormatID(n int64) string { return strconv.FormatInt(n, 10) }

// ValidID reports whether id is exactly an id the server could have issued.
func ValidID(id string) bool {
	_, ok := ParseID(id)
	return ok
}
