package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/term"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/migrations"
	"github.com/switchboard-chat/switchboard/storage"
)

func migrate(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfg.common(fs)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: switchboard migrate up|down|status")
	}
	if err := storage.EnsureDatabase(ctx, cfg.DatabaseURL); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	switch fs.Arg(0) {
	case "up":
		return migrations.Up(ctx, db)
	case "down":
		return migrations.Down(ctx, db)
	case "status":
		return migrations.Status(ctx, db, os.Stdout)
	}
	return fmt.Errorf("migrate: unknown action %q (up, down or status)", fs.Arg(0))
}

// parseArgs parses fs's flags wherever they stand among the positional
// arguments (`users create alice --display-name x`); flag.Parse alone stops at
// the first positional one. The positional ones end up in fs.Args().
func parseArgs(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// withStore runs fn on a migrated store for the CLI commands.
func withStore(ctx context.Context, cfg *config, fn func(*storage.Store) error) error {
	pool, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(storage.New(pool))
}

// usersCmd is `switchboard users create USERNAME`. The password never
// comes from the command line, where ps shows it to everyone: see
// readPassword.
func usersCmd(ctx context.Context, args []string) error {
	const use = "usage: switchboard users create USERNAME [--password-file PATH] [--display-name NAME]"
	if len(args) == 0 || args[0] != "create" {
		return errors.New(use)
	}
	var cfg config
	fs := flag.NewFlagSet("users create", flag.ContinueOnError)
	cfg.common(fs)
	passwordFile := fs.String("password-file", "", "file whose first line is the password (default: typed at a prompt, "+
		"not echoed, or the first line of standard input when that is not a terminal; none given: a random one, printed)")
	display := fs.String("display-name", "", "display name (default: the username)")
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New(use)
	}
	password, err := readPassword(*passwordFile, os.Stdin, os.Stderr)
	if err != nil {
		return err
	}
	random := password == ""
	if random {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		password = base64.RawURLEncoding.EncodeToString(b)
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		p, err := createUser(ctx, s, fs.Arg(0), password, *display)
		if err != nil {
			return err
		}
		fmt.Printf("created user %s (id %s)\n", p.Username, p.ID)
		if random {
			fmt.Printf("password: %s\n", password)
		}
		return nil
	})
}

// readPassword reads the password of users create: the first line of file
// when one is named; else, when in is a terminal, typed twice after a
// prompt on prompt, without echo; else the first line of in (a pipe or a
// redirected file). "" means none was given.
func readPassword(file string, in *os.File, prompt io.Writer) (string, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("password file: %w", err)
		}
		defer f.Close()
		return firstLine(f)
	}
	fd := int(in.Fd())
	if !term.IsTerminal(fd) {
		return firstLine(in)
	}
	ask := func(text string) ([]byte, error) {
		fmt.Fprint(prompt, text)
		defer fmt.Fprintln(prompt) // the Enter typed was not echoed
		return term.ReadPassword(fd)
	}
	password, err := ask("Password (empty for a random one): ")
	if err != nil || len(password) == 0 {
		return "", err
	}
	again, err := ask("Password again: ")
	if err != nil {
		return "", err
	}
	if !bytes.Equal(password, again) {
		return "", errors.New("the two passwords differ")
	}
	return string(password), nil
}

// maxPasswordLine bounds what firstLine reads: far more than a password
// can be (bcrypt takes 72 bytes).
const maxPasswordLine = 4 << 10

// firstLine returns the first line of r without its line ending.
func firstLine(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, maxPasswordLine)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// createUser stores an account with a hashed password, under the rules of
// register (SPEC §3); display "" means the username. users create and dev's
// demo account use it.
func createUser(ctx context.Context, s *storage.Store, username, password, display string) (chat.Profile, error) {
	username, err := chat.NewUsername(username)
	if err != nil {
		return chat.Profile{}, err
	}
	if len([]rune(password)) < chat.MinPasswordChars {
		return chat.Profile{}, fmt.Errorf("password must have at least %d characters", chat.MinPasswordChars)
	}
	if display == "" {
		display = username
	} else if display, err = chat.NormalizeDisplayName(display); err != nil {
		return chat.Profile{}, err
	}
	hash, err := auth.HashPassword(password)
	if err != nil {
		return chat.Profile{}, err
	}
	return s.CreateUser(ctx, username, hash, display)
}

func roomsCmd(ctx context.Context, args []string) error {
	const use = "usage: switchboard rooms create NAME --owner USERNAME [--private] | bridge-slack ROOM CHANNEL_ID | unbridge-slack ROOM"
	if len(args) > 0 && (args[0] == "bridge-slack" || args[0] == "unbridge-slack") {
		return bridgeCmd(ctx, args)
	}
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf(use)
	}
	var cfg config
	fs := flag.NewFlagSet("rooms create", flag.ContinueOnError)
	cfg.common(fs)
	owner := fs.String("owner", "", "username of the room's first member (required)")
	private := fs.Bool("private", false, "make the room private")
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 || *owner == "" {
		return fmt.Errorf(use)
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		r, err := createRoom(ctx, s, *owner, fs.Arg(0), *private)
		if err != nil {
			return err
		}
		fmt.Printf("created %s room %s (id %s)\n", r.Visibility, r.Name, r.ID)
		return nil
	})
}

// bridgeCmd links a room to a Slack channel (bridge-slack ROOM CHANNEL_ID)
// or unlinks it (unbridge-slack ROOM).
func bridgeCmd(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("rooms "+args[0], flag.ContinueOnError)
	cfg.common(fs)
	if err := parseArgs(fs, args[1:]); err != nil {
		return err
	}
	bridge := args[0] == "bridge-slack"
	if (bridge && fs.NArg() != 2) || (!bridge && fs.NArg() != 1) {
		return fmt.Errorf("usage: switchboard rooms bridge-slack ROOM CHANNEL_ID | unbridge-slack ROOM")
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		r, err := s.BridgeSlack(ctx, fs.Arg(0), fs.Arg(1))
		if err != nil {
			return fmt.Errorf("room %q: %w", fs.Arg(0), err)
		}
		if bridge {
			fmt.Printf("room %s (id %s) is bridged to Slack channel %s\n", r.Name, r.ID, fs.Arg(1))
		} else {
			fmt.Printf("room %s (id %s) is no longer bridged to Slack\n", r.Name, r.ID)
		}
		return nil
	})
}

// createRoom stores a room with the account named owner as its first
// member. rooms create and dev's demo room use it.
func createRoom(ctx context.Context, s *storage.Store, owner, name string, private bool) (chat.Room, error) {
	visibility := chat.Public
	if private {
		visibility = chat.Private
	}
	u, err := s.UserByUsername(ctx, owner)
	if err != nil {
		return chat.Room{}, fmt.Errorf("owner %q: %w", owner, err)
	}
	return s.CreateRoom(ctx, u.ID, name, visibility)
}

// tokenCmd prints an access token for a user, signed with the configured
// secret, so that a developer can try the API with curl or websocat.
func tokenCmd(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	cfg.common(fs)
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: switchboard token USERNAME")
	}
	if cfg.JWTSecretFile == "" && os.Getenv("SWITCHBOARD_JWT_SECRET") == "" {
		return fmt.Errorf("token needs the server's secret: set SWITCHBOARD_JWT_SECRET or --jwt-secret-file")
	}
	secret, err := cfg.jwtSecret(cfg.logger())
	if err != nil {
		return err
	}
	tokens, err := auth.New(auth.Config{Secret: secret})
	if err != nil {
		return err
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		u, err := s.UserByUsername(ctx, fs.Arg(0))
		if err != nil {
			return fmt.Errorf("user %q: %w", fs.Arg(0), err)
		}
		// A session of its own, as a login makes, so that logout ends
		// this token and nothing else; its refresh token is never shown.
		_, hash, expires := tokens.NewRefreshToken()
		session, err := s.NewSession(ctx, u.ID, hash, expires)
		if err != nil {
			return err
		}
		token, _, err := tokens.Issue(u.ID, session)
		if err != nil {
			return err
		}
		fmt.Println(token)
		return nil
	})
}
