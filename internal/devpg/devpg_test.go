package devpg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// testDir is a temporary directory the server's account can reach (when
// the tests run as root, the server runs as another account, and
// t.TempDir makes its directory and the one above 0700).
func testDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	return dir
}

func query(t *testing.T, url, sql string, args ...any) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql, args...)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// TestServerLifecycle creates a cluster, keeps its data over a clean stop
// and over a crash whose lock file names a PID now used by another process,
// and refuses a second server on the same directory.
func TestServerLifecycle(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	cfg := Config{Dir: filepath.Join(dir, "pg"), LogFile: filepath.Join(dir, "pg.log")}
	ctx := context.Background()

	s, err := Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Stop(5 * time.Second) })
	query(t, s.URL("postgres"), `CREATE TABLE kept (v text)`)
	query(t, s.URL("postgres"), `INSERT INTO kept VALUES ('before restart')`)
	if os.Geteuid() == 0 {
		status, err := os.ReadFile("/proc/" + strconv.Itoa(s.PID()) + "/status")
		require.NoError(t, err)
		require.NotContains(t, string(status), "\nUid:\t0\t", "postgres must not run as root")
	}

	_, err = Start(ctx, cfg)
	require.ErrorContains(t, err, "already running")

	require.NoError(t, s.Stop(10*time.Second))
	require.False(t, Alive(s.PID()))
	require.NoFileExists(t, filepath.Join(cfg.Dir, "postmaster.pid"), "a clean stop removes the lock")

	s, err = Start(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"before restart"}, query(t, s.URL("postgres"), `SELECT v FROM kept`))

	// A crash: the postmaster dies without cleanup, and its PID is then
	// reused by a process that is not a server of this directory (this one).
	require.NoError(t, syscall.Kill(s.PID(), syscall.SIGKILL))
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("postmaster still running after SIGKILL")
	}
	lock := filepath.Join(cfg.Dir, "postmaster.pid")
	b, err := os.ReadFile(lock)
	require.NoError(t, err, "a killed postmaster leaves its lock")
	_, rest, _ := strings.Cut(string(b), "\n")
	require.NoError(t, os.WriteFile(lock, []byte(strconv.Itoa(os.Getpid())+"\n"+rest), 0o600))

	s, err = Start(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"before restart"}, query(t, s.URL("postgres"), `SELECT v FROM kept`))
	require.NoError(t, s.Stop(10*time.Second))
}

func TestNotACluster(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "pg"), 0o700))
	_, err := Start(context.Background(), Config{Dir: filepath.Join(dir, "pg"), LogFile: filepath.Join(dir, "pg.log")})
	require.ErrorContains(t, err, "holds no PostgreSQL cluster")
}

func TestFindBinaries(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	_, _, err := findBinaries(empty, empty, "")
	require.True(t, errors.Is(err, ErrNoBinaries))
	require.ErrorContains(t, err, "apt-get install postgresql")
	require.ErrorContains(t, err, "brew install postgresql")

	bin, version, err := findBinaries(os.Getenv("PATH"), "/usr/lib/postgresql", "")
	require.NoError(t, err, "the tests need PostgreSQL's server binaries")
	require.FileExists(t, filepath.Join(bin, "initdb"))
	require.Regexp(t, `^PostgreSQL \d+\.\d+`, version)

	_, _, err = findBinaries(os.Getenv("PATH"), "/usr/lib/postgresql", "9.6")
	require.ErrorContains(t, err, "made by PostgreSQL 9.6")
	require.ErrorContains(t, err, version)
}

func TestMajorOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres (PostgreSQL) 15.14 (Debian 15.14-0+deb12u1)": "15",
		"PostgreSQL 17.2":              "17",
		"postgres (PostgreSQL) 9.6.24": "9.6",
		"garbage 17":                   "",
	} {
		require.Equal(t, want, majorOf(in), in)
	}
}
