// Package storagetest gives each test its own migrated Postgres database so
// that tests run in parallel against the real server and clean up after
// themselves.
//
// The first call in a test process migrates a template database (named after
// a hash of the migrations, so a schema change makes a new one) and every
// test then gets CREATE DATABASE ... TEMPLATE, which copies files instead of
// replaying migrations. TEST_DATABASE_URL names the server (default: the
// local one as user postgres). Without a reachable server tests fail, loudly.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver for goose

	"github.com/switchboard-chat/switchboard/migrations"
)

// ServerURL is the Postgres server tests use.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// NewDatabase creates an empty, migrated database for t, drops it when t
// ends, and returns its URL.
func NewDatabase(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	templateOnce.Do(func() { templateName, templateErr = migrateTemplate(ctx) })
	if templateErr != nil {
		t.Fatalf("storagetest: Postgres at %s is required: %v", ServerURL(), templateErr)
	}
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		t.Fatalf("storagetest: connect: %v", err)
	}
	defer admin.Close(ctx)
	name := "sbtest_" + randomHex(6)
	// CREATE DATABASE fails while another session is connected to the
	// template; retry briefly in case a parallel process is still creating it.
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, templateName))
		if err == nil || attempt == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("storagetest: create database: %v", err)
	}
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), ServerURL())
		if err != nil {
			t.Errorf("storagetest: connect for cleanup: %v", err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("storagetest: drop %s: %v", name, err)
		}
	})
	return withDatabase(ServerURL(), name)
}

// NewPool is NewDatabase plus a pool on it that is closed when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("storagetest: pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func migrateTemplate(ctx context.Context) (string, error) {
	name := "sbtemplate_" + migrations.Hash()[:12]
	admin, err := pgx.Connect(ctx, ServerURL())
	if err != nil {
		return "", err
	}
	defer admin.Close(ctx)
	// Several test binaries start at once: one builds the template under an
	// advisory lock, the others wait for it.
	if _, err := admin.Exec(ctx, `SELECT pg_advisory_lock(727274)`); err != nil {
		return "", err
	}
	defer admin.Exec(ctx, `SELECT pg_advisory_unlock(727274)`)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_build"
	_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	db, err := sql.Open("pgx", withDatabase(ServerURL(), building))
	if err != nil {
		return "", err
	}
	err = migrations.Up(ctx, db)
	db.Close()
	if err != nil {
		return "", err
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}

func withDatabase(url, name string) string {
	cfg, err := pgx.ParseConfig(url)
	if err != nil || cfg.Database == "" {
		return url
	}
	i := strings.LastIndex(url, "/"+cfg.Database)
	if i < 0 {
		return url
	}
	return url[:i+1] + name + url[i+1+len(cfg.Database):]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
