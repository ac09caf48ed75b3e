package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/presence"
	"github.com/switchboard-chat/switchboard/storage"
)

// worker runs the job workers and the outbox relay without the HTTP server.
func worker(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	cfg.server(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !cfg.smsOn() && !cfg.slackOn() {
		return errors.New("no integration is configured (TWILIO_* or SLACK_*): a worker would have nothing to do")
	}
	log := cfg.logger()
	// The phone codes' keyed hash derives from the JWT secret (auth).
	secret, err := cfg.jwtSecret(log)
	if err != nil {
		return err
	}
	tokens, err := auth.New(auth.Config{Secret: secret, AccessTTL: cfg.AccessTTL})
	if err != nil {
		return err
	}
	b, err := newBase(ctx, &cfg, log)
	if err != nil {
		return err
	}
	defer b.close()
	// No hub runs here: what the worker stores (Slack messages) is
	// published through the broker to the nodes that have connections.
	post, err := b.newPoster(b.broker, log)
	if err != nil {
		return err
	}
	online, err := presence.New(presence.Config{Redis: b.rdb, Prefix: cfg.RedisPrefix})
	if err != nil {
		return err
	}
	w, err := newWorkers(&cfg, b, post, online, tokens, log)
	if err != nil {
		return err
	}
	log.Info("switchboard worker running", slog.Bool("sms", cfg.smsOn()), slog.Bool("slack", cfg.slackOn()))
	return w.run(ctx)
}

// jobsCmd is `switchboard jobs stats|dead|retry ID`.
func jobsCmd(ctx context.Context, args []string) error {
	const use = "usage: switchboard jobs stats|dead|retry ID [--json]"
	if len(args) == 0 {
		return errors.New(use)
	}
	var cfg config
	fs := flag.NewFlagSet("jobs "+args[0], flag.ContinueOnError)
	cfg.redis(fs)
	cfg.database(fs) // retry records the job in the journal
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	rdb, err := cfg.redisClient()
	if err != nil {
		return err
	}
	defer rdb.Close()
	q, err := newQueue(&cfg, rdb, nil, nil, cfg.logger())
	if err != nil {
		return err
	}
	out := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	defer out.Flush()
	show := func(v any, table func()) error {
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(v)
		}
		table()
		return nil
	}

	switch {
	case args[0] == "stats" && fs.NArg() == 0:
		stats, err := q.Stats(ctx)
		if err != nil {
			return err
		}
		breakers, err := q.Breakers(ctx)
		if err != nil {
			return err
		}
		return show(map[string]any{"queues": stats, "breakers": breakers}, func() {
			fmt.Fprintln(out, "QUEUE\tPENDING\tACTIVE\tSCHEDULED\tRETRY\tDEAD\tPROCESSED TODAY\tFAILED TODAY")
			for _, s := range stats {
				fmt.Fprintf(out, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Queue, s.Pending, s.Active, s.Scheduled, s.Retry, s.Dead, s.Processed, s.Failed)
			}
			fmt.Fprintln(out, "\nAPI\tBREAKER\tSINCE")
			for _, b := range breakers {
				fmt.Fprintf(out, "%s\t%s\t%s\n", b.API, b.State, b.Since.Format(time.RFC3339))
			}
		})
	case args[0] == "dead" && fs.NArg() == 0:
		dead, err := q.Dead(ctx)
		if err != nil {
			return err
		}
		return show(dead, func() {
			fmt.Fprintln(out, "ID\tTYPE\tATTEMPTS\tFAILED AT\tLAST ERROR")
			for _, d := range dead {
				fmt.Fprintf(out, "%s\t%s\t%d\t%s\t%s\n", d.ID, d.Type, d.Attempts, d.FailedAt.Format(time.RFC3339), d.LastError)
			}
		})
	case args[0] == "retry" && fs.NArg() == 1:
		return withStore(ctx, &cfg, func(store *storage.Store) error {
			// Queued again, the job is recorded again until it ran.
			q, err := newQueue(&cfg, rdb, store, nil, cfg.logger())
			if err != nil {
				return err
			}
			if err := q.Retry(ctx, fs.Arg(0)); err != nil {
				return fmt.Errorf("retry %s: %w", fs.Arg(0), err)
			}
			fmt.Fprintf(out, "job %s queued again\n", fs.Arg(0))
			return nil
		})
	}
	return errors.New(use)
}
