package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The authflood scenario measures what a password-guessing flood does to a
// real user (SPEC §3's auth limits). Attackers, from one client address,
// send wrong-password logins back to back; meanwhile a real user, from
// another address, logs in and reads /me on a fixed schedule (open loop:
// each latency counts from the request's planned start, so a server that
// falls behind shows it). It runs three phases, each on a fresh node, one
// after the other on the same machine:
//
//  1. spray (each guess for another username, as credential stuffing does,
//     so the per-username wait never starts) with the per-IP limit off:
//     every guess costs a password check, as before the limits existed;
//  2. the same spray with the per-IP limit at its default (60/min);
//  3. every guess for one username with the per-IP limit off: the
//     per-username wait alone.

// authFloodParams size the scenario.
type authFloodParams struct {
	Attackers   int           // concurrent wrong-password logins
	Duration    time.Duration // measured time, after a second of attack alone
	LoginEvery  time.Duration // the real user's login schedule
	ReadMeEvery time.Duration // and its /me schedule
}

// The client addresses, told to the node through X-Forwarded-For: the
// nodes of this scenario trust loopback as a proxy.
const (
	attackerIP = "203.0.113.66"
	userIP     = "198.51.100.20"
)

// runAuthFlood starts a node per phase and measures each.
func runAuthFlood(ctx context.Context, f *flags, p authFloodParams) ([]*Result, error) {
	tmp, secret, err := spawnDir(f)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	phases := []struct {
		name  string
		spray bool
		args  []string
	}{
		{"spray, per-IP limit off (before)", true, []string{"--trusted-proxies", "127.0.0.1/32"}},
		{"spray, per-IP limit 60/min (after)", true, []string{"--trusted-proxies", "127.0.0.1/32", "--auth-rate-limit", "60"}},
		{"one username, per-IP limit off (per-username wait alone)", false, []string{"--trusted-proxies", "127.0.0.1/32"}},
	}
	var results []*Result
	for i, ph := range phases {
		run := fmt.Sprintf("%s%d", runID(), i)
		c, err := startCluster(ctx, f, run, tmp, secret, 1, limitsOff, ph.args...)
		if err != nil {
			return nil, err
		}
		res, err := authFlood(ctx, c.nodes[0], run, ph.name, ph.spray, p)
		c.stop()
		if err != nil {
			return nil, err
		}
		res.Limits = "abuse limits off (" + offFlags + ") but as this phase sets them: " + strings.Join(ph.args, " ")
		res.Loop = openLoop
		results = append(results, res)
	}
	return results, nil
}

// authFlood measures one phase on n; spray makes each guess for another
// username.
func authFlood(ctx context.Context, n *node, run, phase string, spray bool, p authFloodParams) (*Result, error) {
	user, err := n.register(ctx, run+"-user")
	if err != nil {
		return nil, err
	}
	victim, err := n.register(ctx, run+"-victim")
	if err != nil {
		return nil, err
	}
	res := newResult("authflood", []*node{n}, map[string]any{
		"phase": phase, "spray": spray, "attackers": p.Attackers, "duration": p.Duration.String(),
		"login_every": p.LoginEvery.String(), "me_every": p.ReadMeEvery.String(),
	})

	attackCtx, stopAttack := context.WithCancel(ctx)
	defer stopAttack()
	var attempts, refused, failed atomic.Int64
	var attackers sync.WaitGroup
	for range p.Attackers {
		attackers.Go(func() {
			for attackCtx.Err() == nil {
				name := victim.Username
				if spray {
					name = fmt.Sprintf("%s-guess-%d", run, attempts.Load())
				}
				err := n.doFrom(attackCtx, attackerIP, "POST", "/api/v1/auth/login", "",
					map[string]string{"username": name, "password": "a wrong guess"}, nil)
				attempts.Add(1)
				switch status(err) {
				case http.StatusTooManyRequests:
					refused.Add(1)
				case http.StatusUnauthorized:
				default:
					if attackCtx.Err() == nil {
						failed.Add(1)
					}
				}
			}
		})
	}
	select { // the flood alone first, so that the measure starts in it
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, ctx.Err()
	}

	before := sampleCPU(ctx, []*node{n})
	var logins, reads latencies
	var errs atomic.Int64
	start := time.Now()
	var users sync.WaitGroup
	schedule := func(every time.Duration, do func(context.Context) error, into *latencies) {
		for i := 0; ; i++ {
			planned := start.Add(time.Duration(i) * every)
			if planned.Sub(start) >= p.Duration {
				return
			}
			time.Sleep(time.Until(planned))
			users.Go(func() {
				if err := do(ctx); err != nil {
					errs.Add(1)
					return
				}
				into.add(time.Since(planned))
			})
		}
	}
	var schedules sync.WaitGroup
	schedules.Go(func() {
		schedule(p.LoginEvery, func(ctx context.Context) error {
			return n.doFrom(ctx, userIP, "POST", "/api/v1/auth/login", "",
				map[string]string{"username": user.Username, "password": password}, nil)
		}, &logins)
	})
	schedules.Go(func() {
		schedule(p.ReadMeEvery, func(ctx context.Context) error {
			return n.doFrom(ctx, userIP, "GET", "/api/v1/me", user.Token, nil, nil)
		}, &reads)
	})
	schedules.Wait()
	users.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.CPU = cores(before, sampleCPU(ctx, []*node{n}))
	stopAttack()
	attackers.Wait()

	res.Latencies["real user login (open loop)"] = logins.summary()
	res.Latencies["real user /me (open loop)"] = reads.summary()
	res.add("attacker attempts", float64(attempts.Load()), "")
	res.add("attacker attempts refused before any password work", float64(refused.Load()), "")
	res.add("real user requests failed", float64(errs.Load()), "")
	if errs.Load() > 0 || failed.Load() > 0 {
		res.Failed = true
		res.Notes = append(res.Notes, fmt.Sprintf("%d real-user requests and %d attacker requests failed unexpectedly", errs.Load(), failed.Load()))
	}
	if errs.Load() == 0 && logins.summary().Count == 0 {
		return nil, errors.New("authflood: no login measured")
	}
	return res, nil
}

// doFrom is do with X-Forwarded-For set to ip.
func (n *node) doFrom(ctx context.Context, ip, method, path, token string, body, out any, want ...int) error {
	return n.doHeader(ctx, http.Header{"X-Forwarded-For": {ip}}, method, path, token, body, out, want...)
}
