// Command switchboard is the one binary of Switchboard: the server and its
// command-line tools. Only this package reads flags and the environment and
// wires the other packages together.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: switchboard <command> [flags]

commands:
  serve                         run the HTTP and WebSocket server (and the job workers, unless --no-workers)
  worker                        run only the job workers (SMS, Slack) and the outbox relay
  jobs stats|dead|retry ID      job queue counts and circuit breakers, the dead-letter set, re-queue a dead job
  dev                           serve for development: local or embedded Postgres and Redis, a demo
                                account (--embedded, --no-seed, --data-dir)
  migrate up|down|status        apply, roll back or list database migrations
  users create USERNAME         create an account (--display-name; the password is asked for without echo,
                                read from standard input or --password-file, or made up and printed)
  rooms create NAME             create a room (--owner USERNAME, --private)
  rooms bridge-slack ROOM CHANNEL_ID   link a room (name or id) to a Slack channel
  rooms unbridge-slack ROOM     unlink it
  token USERNAME                print an access token for USERNAME (development)

Every command takes -h for its flags. Flags override environment variables
(DATABASE_URL, REDIS_URL, SWITCHBOARD_*); Twilio and Slack credentials come
only from the environment (TWILIO_*, SLACK_*).
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		stop()
		log.Fatalf("switchboard: %v", err)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return fmt.Errorf("no command given")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, rest)
	case "worker":
		return worker(ctx, rest)
	case "jobs":
		return jobsCmd(ctx, rest)
	case "dev":
		return dev(ctx, rest)
	case "migrate":
		return migrate(ctx, rest)
	case "users":
		return usersCmd(ctx, rest)
	case "rooms":
		return roomsCmd(ctx, rest)
	case "token":
		return tokenCmd(ctx, rest)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}
