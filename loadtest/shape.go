package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The shape of the writes, mixed and sweep scenarios: users, each with one
// connection, spread round-robin over the nodes; every user belongs to a
// small "home" room (sizes cycling over -room-sizes, 4 to 16 by default)
// and to one of the shared "big" rooms of about -big-room members (50),
// and sends into both: -big-share of its messages (10 %) into the big one.
// So rooms of 4 to 50 members, every user in at least one and sending into
// each of its rooms.

// shapeParams say how users are spread over rooms.
type shapeParams struct {
	Users     int
	HomeSizes []int   // home rooms: users split into rooms of these sizes, cycling
	BigSize   int     // members of each shared room (0: none)
	BigShare  float64 // share of each user's messages that go to its shared room
}

// defaultHomeSizes are the home rooms' sizes, cycling: mostly rooms of 4.
var defaultHomeSizes = []int{4, 4, 4, 4, 6, 8, 12, 16}

// parseSizes reads a comma-separated list of room sizes (each at least 2).
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 2 {
			return nil, fmt.Errorf("room size %q: a number of at least 2", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no room size")
	}
	return out, nil
}

// parseRates reads a comma-separated list of rates ("1000,2k,2.5k").
func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		mult := 1.0
		if v, ok := strings.CutSuffix(f, "k"); ok {
			f, mult = v, 1000
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("rate %q: a positive number", f)
		}
		out = append(out, r*mult)
	}
	if len(out) == 0 {
		return nil, errors.New("no rate")
	}
	slices.Sort(out)
	return out, nil
}

// partition splits users 0..n-1 into consecutive groups of sizes cycling
// over sizes; a remainder smaller than the smallest size joins the last
// group (n smaller than that: one group of all).
func partition(n int, sizes []int) [][]int {
	var groups [][]int
	smallest := slices.Min(sizes)
	for i, k := 0, 0; i < n; k++ {
		size := min(sizes[k%len(sizes)], n-i)
		if size < smallest && len(groups) > 0 {
			last := len(groups) - 1
			for u := i; u < n; u++ {
				groups[last] = append(groups[last], u)
			}
			break
		}
		g := make([]int, size)
		for j := range g {
			g[j] = i + j
		}
		groups = append(groups, g)
		i += size
	}
	return groups
}

// bigRooms is how many shared rooms n users fill at size each (at least
// one when size > 0).
func bigRooms(n, size int) int {
	if size <= 0 || n == 0 {
		return 0
	}
	return max(1, int(math.Round(float64(n)/float64(size))))
}

// shape is the accounts and rooms of a run.
type shape struct {
	p      shapeParams
	users  []account
	homes  []string // room ids
	bigs   []string
	homeOf []int // per user: index into homes
	bigOf  []int // per user: index into bigs, or -1
	sizes  map[string]int
}

// describe says what the shape is, for the report.
func (s *shape) describe(nodes int) string {
	var homeSizes []int
	for _, r := range s.homes {
		homeSizes = append(homeSizes, s.sizes[r])
	}
	lo, hi := slices.Min(homeSizes), slices.Max(homeSizes)
	d := fmt.Sprintf("%d users, one connection each, round-robin over %d node(s); %d home rooms of %d–%d members (sizes cycling %v)",
		len(s.users), nodes, len(s.homes), lo, hi, s.p.HomeSizes)
	if len(s.bigs) > 0 {
		var bs []int
		for _, r := range s.bigs {
			bs = append(bs, s.sizes[r])
		}
		d += fmt.Sprintf(", and every user also in one of %d shared rooms of %d–%d members, which gets %.0f %% of its messages",
			len(s.bigs), slices.Min(bs), slices.Max(bs), 100*s.p.BigShare)
	}
	return d + fmt.Sprintf("; %.1f member connections per message on average", s.fanout())
}

// fanout is the mean number of member connections a message reaches (its
// sender's included).
func (s *shape) fanout() float64 {
	var sum float64
	for i := range s.users {
		home := float64(s.sizes[s.homes[s.homeOf[i]]])
		if s.bigOf[i] < 0 {
			sum += home
			continue
		}
		sum += (1-s.p.BigShare)*home + s.p.BigShare*float64(s.sizes[s.bigs[s.bigOf[i]]])
	}
	return sum / float64(len(s.users))
}

// buildShape registers the users and makes the rooms: the first member of
// each room creates it, the others join (each user makes at most four
// HTTP writes, under the per-user budget's burst of 20).
func buildShape(ctx context.Context, e *env, prefix string, p shapeParams) (*shape, error) {
	s := &shape{p: p, sizes: map[string]int{}}
	first := e.nodes[0]
	fmt.Fprintf(logOut, "setup: registering %d accounts…\n", p.Users)
	t := time.Now()
	var err error
	if s.users, err = first.registerMany(ctx, prefix, p.Users); err != nil {
		return nil, err
	}
	fmt.Fprintf(logOut, "setup: %d accounts in %.1f s\n", p.Users, time.Since(t).Seconds())
	groups := partition(p.Users, p.HomeSizes)
	s.homeOf = make([]int, p.Users)
	s.bigOf = make([]int, p.Users)
	var bigGroups [][]int
	nBig := bigRooms(p.Users, p.BigSize)
	bigGroups = make([][]int, nBig)
	for i := range p.Users {
		s.bigOf[i] = -1
		if nBig > 0 {
			s.bigOf[i] = i % nBig
			bigGroups[i%nBig] = append(bigGroups[i%nBig], i)
		}
	}
	for k, g := range groups {
		for _, u := range g {
			s.homeOf[u] = k
		}
	}
	// Create and fill the rooms, a few at a time.
	make1 := func(name string, g []int) (string, error) {
		n := e.nodes[g[0]%len(e.nodes)]
		id, err := n.createRoom(ctx, s.users[g[0]], name)
		if err != nil {
			return "", err
		}
		var rest []account
		for _, u := range g[1:] {
			rest = append(rest, s.users[u])
		}
		return id, n.joinAll(ctx, id, rest)
	}
	s.homes = make([]string, len(groups))
	s.bigs = make([]string, nBig)
	errs := make([]error, len(groups)+nBig)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for k, g := range append(slices.Clone(groups), bigGroups...) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if k < len(groups) {
				s.homes[k], errs[k] = make1(fmt.Sprintf("%s-h%d", prefix, k), g)
			} else {
				s.bigs[k-len(groups)], errs[k] = make1(fmt.Sprintf("%s-b%d", prefix, k-len(groups)), g)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for k, g := range groups {
		s.sizes[s.homes[k]] = len(g)
	}
	for k, g := range bigGroups {
		s.sizes[s.bigs[k]] = len(g)
	}
	return s, nil
}

// pickRoom chooses the room of m's next message: its shared room with
// probability share, else its home room (the first of m.rooms).
func pickRoom(rooms []string, share float64, rng *rand.Rand) string {
	if len(rooms) > 1 && rng.Float64() < share {
		return rooms[1]
	}
	return rooms[0]
}

// dialFleet opens every member's connection (a few at a time), starts its
// reader, and waits until each is subscribed to every room it checks.
func dialFleet(ctx context.Context, e *env, f *fleet, readers *sync.WaitGroup) error {
	fmt.Fprintf(logOut, "setup: dialling %d connections…\n", len(f.members))
	errs := make([]error, len(f.members))
	sem := make(chan struct{}, 32)
	var dials sync.WaitGroup
	for i, m := range f.members {
		sem <- struct{}{}
		dials.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			ws, err := e.dialer.dialFrom(dctx, m.node, m.user, i)
			if err != nil {
				errs[i] = fmt.Errorf("dial %s: %w", m.user.Username, err)
				return
			}
			m.ws = ws
			readers.Go(func() { _ = readLines(ws, m.onLine) })
			// Hold the slot until the server has set the connection up, as
			// a client waits for ready before anything else.
			select {
			case <-m.ready:
			case <-dctx.Done():
				errs[i] = fmt.Errorf("dial %s: no ready frame within 30 s", m.user.Username)
			}
		})
	}
	dials.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	deadline := time.After(time.Minute)
	for _, m := range f.members {
		want := map[string]bool{}
		for r := range m.tracks {
			want[r] = true
		}
		for len(want) > 0 {
			select {
			case r := <-m.subscribed:
				delete(want, r)
			case <-deadline:
				return fmt.Errorf("connections not subscribed to their rooms within a minute")
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// closeFleet closes every connection of f and waits for the readers.
func closeFleet(f *fleet, readers *sync.WaitGroup) {
	for _, m := range f.members {
		if m.ws != nil {
			m.ws.CloseNow()
		}
	}
	readers.Wait()
}
