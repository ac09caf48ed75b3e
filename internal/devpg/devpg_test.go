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

// TestPrivateDir runs the server with its data directory inside a
// directory of mode 0700, as a checkout under /root is. As root, the
// server's account cannot enter it: the cluster is made in a directory of
// that account's own under a fallback root and linked from the data
// directory; a restart finds it again with its data; a fallback directory
// cleaned away is replaced by a new cluster; and a link to a directory that
// is not the account's alone is refused. As another user, the cluster is
// made in place.
func TestPrivateDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	cfg := Config{Dir: filepath.Join(dir, "state", "postgres"), LogFile: filepath.Join(dir, "state", "postgres.log")}
	ctx := context.Background()
	start := func() *Server {
		t.Helper()
		s, err := Start(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() {
			_ = s.Stop(5 * time.Second)
			if home := filepath.Dir(s.Dir()); strings.HasPrefix(filepath.Base(home), fallbackPrefix) {
				_ = os.RemoveAll(home)
			}
		})
		return s
	}

	s := start()
	query(t, s.URL("postgres"), `CREATE TABLE kept (v text)`)
	query(t, s.URL("postgres"), `INSERT INTO kept VALUES ('before restart')`)
	if os.Geteuid() != 0 {
		require.Equal(t, cfg.Dir, s.Dir(), "a server of this process's own user reaches the directory")
		require.NoError(t, s.Stop(10*time.Second))
		return
	}
	cred, account, err := unprivileged()
	require.NoError(t, err)
	home := filepath.Dir(s.Dir())
	t.Logf("cluster of %s in %s", cfg.Dir, s.Dir())
	require.Contains(t, fallbackRoots(account, cred), filepath.Dir(home))
	require.True(t, strings.HasPrefix(filepath.Base(home), fallbackPrefix), home)
	link, err := os.Readlink(cfg.Dir)
	require.NoError(t, err, "the data directory links to the cluster")
	require.Equal(t, s.Dir(), link)
	st, err := os.Stat(home)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), st.Mode().Perm())
	require.Equal(t, cred.Uid, st.Sys().(*syscall.Stat_t).Uid, "the fallback directory belongs to the server's account")

	// A restart finds the cluster through the link.
	require.NoError(t, s.Stop(10*time.Second))
	s = start()
	require.Equal(t, link, s.Dir())
	require.Equal(t, []string{"before restart"}, query(t, s.URL("postgres"), `SELECT v FROM kept`))

	// The temporary files were cleaned: a new cluster, a new link.
	require.NoError(t, s.Stop(10*time.Second))
	require.NoError(t, os.RemoveAll(home))
	s = start()
	require.NotEqual(t, link, s.Dir())
	require.Equal(t, []string{"0"}, query(t, s.URL("postgres"), `SELECT count(*)::text FROM pg_tables WHERE tablename = 'kept'`))
	require.NoError(t, s.Stop(10*time.Second))

	// A link into a fallback root whose target is not the account's alone
	// (someone else made it) is not followed.
	roots := fallbackRoots(account, cred)
	forged, err := os.MkdirTemp(roots[len(roots)-1], fallbackPrefix)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(forged) })
	other := Config{Dir: filepath.Join(dir, "other", "postgres"), LogFile: filepath.Join(dir, "other.log")}
	require.NoError(t, os.MkdirAll(filepath.Dir(other.Dir), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(forged, "postgres"), other.Dir))
	_, err = Start(ctx, other)
	require.ErrorContains(t, err, "not a directory of PostgreSQL's account alone")
}
