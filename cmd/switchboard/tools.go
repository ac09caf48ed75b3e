package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/migrations"
	"github.com/switchboard-chat/switchboard/storage"
)

func migrate(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfg.common(fs)
	if err := fs.Parse(args); err != nil {
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

// withStore runs fn on a migrated store for the CLI commands.
func withStore(ctx context.Context, cfg *config, fn func(*storage.Store) error) error {
	pool, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(storage.New(pool))
}

func usersCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: switchboard users create USERNAME [--password P] [--display-name N]")
	}
	var cfg config
	fs := flag.NewFlagSet("users create", flag.ContinueOnError)
	cfg.common(fs)
	password := fs.String("password", "", "password (default: a random one, printed)")
	display := fs.String("display-name", "", "display name (default: the username)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: switchboard users create USERNAME [--password P] [--display-name N]")
	}
	username := fs.Arg(0)
	if *password == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		*password = base64.RawURLEncoding.EncodeToString(b)
		fmt.Printf("password: %s\n", *password)
	}
	if len([]rune(*password)) < chat.MinPasswordChars {
		return fmt.Errorf("password must have at least %d characters", chat.MinPasswordChars)
	}
	if *display == "" {
		*display = username
	}
	hash, err := auth.HashPassword(*password)
	if err != nil {
		return err
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		p, err := s.CreateUser(ctx, username, hash, *display)
		if err != nil {
			return err
		}
		fmt.Printf("created user %s (id %s)\n", p.Username, p.ID)
		return nil
	})
}

func roomsCmd(ctx context.Context, args []string) error {
	const use = "usage: switchboard rooms create NAME --owner USERNAME [--private]"
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf(use)
	}
	var cfg config
	fs := flag.NewFlagSet("rooms create", flag.ContinueOnError)
	cfg.common(fs)
	owner := fs.String("owner", "", "username of the room's first member (required)")
	private := fs.Bool("private", false, "make the room private")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 || *owner == "" {
		return fmt.Errorf(use)
	}
	visibility := chat.Public
	if *private {
		visibility = chat.Private
	}
	return withStore(ctx, &cfg, func(s *storage.Store) error {
		u, err := s.UserByUsername(ctx, *owner)
		if err != nil {
			return fmt.Errorf("owner %q: %w", *owner, err)
		}
		r, err := s.CreateRoom(ctx, u.ID, fs.Arg(0), visibility)
		if err != nil {
			return err
		}
		fmt.Printf("created %s room %s (id %s)\n", r.Visibility, r.Name, r.ID)
		return nil
	})
}

// tokenCmd prints an access token for a user, signed with the configured
// secret, so that a developer can try the API with curl or websocat.
func tokenCmd(ctx context.Context, args []string) error {
	var cfg config
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	cfg.common(fs)
	if err := fs.Parse(args); err != nil {
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
		token, _, err := tokens.Issue(u.ID)
		if err != nil {
			return err
		}
		fmt.Println(token)
		return nil
	})
}
