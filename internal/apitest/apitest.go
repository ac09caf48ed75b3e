// Package apitest runs Switchboard's HTTP API and WebSocket hub for tests,
// and holds the fixtures tests build through them: accounts (inserted with
// a cheap bcrypt hash, then logged in over HTTP), rooms, members and
// messages; an HTTP client that decodes the error shape of SPEC §2; and a
// WebSocket client that splits batched frames into objects.
//
// NewNode runs one node on real Postgres (a database of its own, from
// storagetest) and real Redis (a prefix of its own, from brokertest), wired
// as `switchboard serve` wires it, but with a hub.LocalBroker for the Redis
// broker and without the integrations: enough for the tests of one HTTP
// handler or of the WebSocket protocol on one node, in web/ and hub/. Tests
// that need the real node (several nodes, the integrations, the binary)
// run it in cmd/switchboard, whose harness makes the same fixtures with a
// Client.
//
// It lives in internal/ rather than beside storage because it needs the
// HTTP API and the hub, which storagetest, imported by storage's own tests,
// must not.
package apitest

import (
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/bcrypt"
)

// Secret is the JWT key of every test node.
var Secret = []byte("test-secret-test-secret-test-secret!")

// Password is the password of every account Register makes.
const Password = "fixture password"

// PasswordHash is Password hashed at bcrypt's lowest cost. The register
// endpoint hashes at the production cost, about 1-2 s of CPU under -race;
// so test accounts are inserted with this hash and logged in over HTTP, and
// only the register tests pay the real cost.
var PasswordHash = sync.OnceValue(func() string {
	h, err := bcrypt.GenerateFromPassword([]byte(Password), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
})

var seq atomic.Int64

// Seq returns a number that no other call in the test process returns.
func Seq() int64 { return seq.Add(1) }

// Unique returns prefix followed by Seq: a name no other test uses.
func Unique(prefix string) string { return prefix + strconv.FormatInt(Seq(), 10) }
