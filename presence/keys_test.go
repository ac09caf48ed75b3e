package presence

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// slot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash
// tag (the text between the first '{' and the first '}' after it, if not
// empty) or of the whole key, modulo 16384.
func slot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for _, b := range []byte(key) {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestSlot(t *testing.T) {
	t.Parallel()
	// CRC16/XMODEM's check value, and the examples of Redis's CLUSTER
	// KEYSLOT documentation.
	require.Equal(t, 0x31c3, slot("123456789"))
	require.Equal(t, 11058, slot("somekey"))
	require.Equal(t, 2515, slot("foo{hash_tag}"))
	require.Equal(t, 2515, slot("bar{hash_tag}"))
}

// nopClient is a client that is never used.
var nopClient = redis.NewClient(&redis.Options{})

// TestScriptKeysShareASlot: every key a script touches is on one slot of a
// Redis Cluster (SPEC §15), whatever the user and the prefix; partitions
// spread over as many slots.
func TestScriptKeysShareASlot(t *testing.T) {
	t.Parallel()
	p, err := New(Config{Redis: nopClient, Prefix: "sb:prod:"})
	require.NoError(t, err)
	slots := map[int]bool{}
	for i := range 5000 {
		user := fmt.Sprint(i)
		keys := p.keys(user) // Connect, Disconnect and Refresh
		require.Equal(t, slot(keys[0]), slot(keys[1]), "%v", keys)
		// Sweep: the partition's index and its users' sets.
		require.Equal(t, slot(p.indexKey(p.partition(user))), slot(p.userKey(user)))
		slots[slot(keys[0])] = true
	}
	require.Len(t, slots, 64, "one slot per partition")
}
