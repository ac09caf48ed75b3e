// Package devpg runs a private PostgreSQL server for `switchboard dev`: a
// real PostgreSQL, started from the machine's own binaries, on a cluster kept
// in a directory between runs, listening on loopback only.
//
// It is a package of its own, not part of cmd/switchboard, because it is a
// small process supervisor (finding binaries, dropping root, initdb, a stale
// lock, a child that must die with its parent) that is tested on its own and
// that nothing else in the server needs.
//
// PostgreSQL refuses to run as root; when this process is root, initdb and
// postgres run as the "postgres" account (else "nobody"), which is given the
// cluster directory. When that account cannot reach the directory asked for
// (a checkout under /root, or any directory of mode 0700), the cluster is
// made in a directory of that account's own in its home directory (else
// under /var/tmp, else the system's temporary directory), and the directory
// asked for becomes a symbolic link to it, so the next run finds it again.
// On Linux the server gets SIGKILL when this process dies, even by SIGKILL
// (Pdeathsig); elsewhere it outlives a killed parent.
package devpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config says where and how to run the server.
type Config struct {
	// Dir is the cluster's data directory. It is created with initdb when it
	// does not exist, and reused as it is otherwise. When this process is
	// root and the server's account cannot reach it, Dir becomes a link to
	// a directory that account can reach (see Server.Dir). Required.
	Dir string
	// LogFile receives the server's own output, appended. Required.
	LogFile string
	// Logger reports what Start does; nil discards it.
	Logger *slog.Logger
}

// Server is a running PostgreSQL server.
type Server struct {
	port    int // on 127.0.0.1
	pid     int
	version string
	dir     string        // the cluster's directory, links resolved
	done    chan struct{} // closed once the postmaster has exited
	waitErr error         // the postmaster's exit; read after done
}

// ErrNoBinaries is returned by Start when no PostgreSQL server binaries are
// installed; its message says how to install them.
var ErrNoBinaries = errors.New(`PostgreSQL server binaries (initdb, postgres) not found on PATH, via "pg_config --bindir" or under /usr/lib/postgresql/*/bin. Install them:
  Debian/Ubuntu: sudo apt-get install postgresql
  Fedora/RHEL:   sudo dnf install postgresql-server
  macOS:         brew install postgresql@17
or give switchboard a running server with DATABASE_URL`)

// startTimeout bounds how long the server may take to accept connections
// (crash recovery of a large cluster could take longer; a dev cluster not).
const startTimeout = 60 * time.Second

// Start prepares the cluster (initdb on first use, a stale lock from a
// crashed run removed) and starts the server on a free port of 127.0.0.1,
// returning once it accepts connections. Stop it with Stop.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.LogFile == "" {
		return nil, errors.New("devpg: Config needs Dir and LogFile")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, fmt.Errorf("devpg: %w", err)
	}
	cred, account, err := unprivileged()
	if err != nil {
		return nil, err
	}
	if cred != nil {
		if dir, err = clusterDir(dir, account, cred, log); err != nil {
			return nil, err
		}
	}
	major, err := clusterVersion(dir)
	if err != nil {
		return nil, err
	}
	bin, version, err := findBinaries(os.Getenv("PATH"), "/usr/lib/postgresql", major)
	if err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(cfg.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("devpg: server log: %w", err)
	}
	defer logFile.Close() // the child holds its own copy
	if major == "" {
		log.Info("creating a PostgreSQL cluster", slog.String("dir", dir), slog.String("version", version), slog.String("user", account))
		if err := initdb(ctx, bin, dir, cred, logFile); err != nil {
			return nil, err
		}
	} else if cred != nil {
		if err := chownTree(dir, cred); err != nil {
			return nil, err
		}
	}
	if err := recoverLock(dir, log); err != nil {
		return nil, err
	}

	// A free port may be taken by someone else before postgres binds it;
	// try again with another one.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{port: port, version: version, dir: dir, done: make(chan struct{})}
		offset, _ := logFile.Seek(0, io.SeekEnd)
		if err := s.start(bin, dir, cred, logFile); err != nil {
			return nil, err
		}
		if lastErr = s.waitReady(ctx); lastErr == nil {
			log.Info("PostgreSQL started", slog.Int("pid", s.pid), slog.String("url", s.URL("")),
				slog.String("dir", dir), slog.String("log", cfg.LogFile))
			return s, nil
		}
		_ = s.Stop(5 * time.Second)
		out := logSince(cfg.LogFile, offset)
		lastErr = fmt.Errorf("devpg: postgres did not start: %w\n%s", lastErr, out)
		if !strings.Contains(out, "could not bind") || ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// URL is a connection URL for database on the server (user postgres, no
// password).
func (s *Server) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, database)
}

// PID is the postmaster's process id.
func (s *Server) PID() int { return s.pid }

// Version is the server's version, like "PostgreSQL 15.14".
func (s *Server) Version() string { return s.version }

// Dir is the directory the cluster lives in: Config.Dir, or the directory
// it links to when the server's account could not reach Config.Dir.
func (s *Server) Dir() string { return s.dir }

// Done is closed when the server has exited, whether by Stop or not.
func (s *Server) Done() <-chan struct{} { return s.done }

// Stop shuts the server down cleanly ("fast" shutdown: sessions are ended,
// a checkpoint written), waiting up to timeout before killing it.
func (s *Server) Stop(timeout time.Duration) error {
	for _, step := range []struct {
		sig  syscall.Signal
		wait time.Duration
	}{{syscall.SIGINT, timeout}, {syscall.SIGQUIT, 5 * time.Second}, {syscall.SIGKILL, 5 * time.Second}} {
		select {
		case <-s.done:
			return s.exitErr()
		default:
		}
		_ = syscall.Kill(s.pid, step.sig)
		select {
		case <-s.done:
			if step.sig != syscall.SIGINT {
				return fmt.Errorf("devpg: postgres did not stop in %s; sent %s", timeout, step.sig)
			}
			return s.exitErr()
		case <-time.After(step.wait):
		}
	}
	return fmt.Errorf("devpg: postgres (PID %d) did not exit after SIGKILL", s.pid)
}

func (s *Server) exitErr() error {
	if s.waitErr != nil {
		return fmt.Errorf("devpg: postgres: %w", s.waitErr)
	}
	return nil
}

// start launches the postmaster. It is started and waited for by one
// goroutine locked to its OS thread: Pdeathsig fires when the thread that
// forked the child ends, not the process, and a locked goroutine keeps its
// thread to itself until it returns, which is after the child has exited.
func (s *Server) start(bin, dir string, cred *syscall.Credential, logFile *os.File) error {
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dir, "-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=", // TCP only: nothing to clean up in /tmp or /run
		"-c", "logging_collector=off")
	cmd.Dir = dir // not this process's working directory, which the account may not enter
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr(cred)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with this goroutine, after
		// the child.
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("devpg: start postgres: %w", err)
			return
		}
		s.pid = cmd.Process.Pid
		started <- nil
		s.waitErr = cmd.Wait()
		close(s.done)
	}()
	return <-started
}

// waitReady polls until the server accepts a connection, it exits, or
// startTimeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(cctx, s.URL("postgres"))
		ccancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-s.done:
			return fmt.Errorf("it exited (%v)", s.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("not accepting connections: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// initdb creates the cluster in a sibling directory and renames it into
// place, so that an interrupted initdb never leaves a half-made cluster at
// dir.
func initdb(ctx context.Context, bin, dir string, cred *syscall.Credential, logFile *os.File) error {
	tmp := dir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	if cred != nil {
		if err := os.Chown(tmp, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("devpg: %w", err)
		}
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", tmp,
		"--username=postgres", "--auth=trust", "--encoding=UTF8", "--no-locale")
	cmd.Dir = tmp
	cmd.Stdout, cmd.Stderr = io.MultiWriter(logFile, &out), io.MultiWriter(logFile, &out)
	cmd.SysProcAttr = sysProcAttr(cred)
	// initdb also dies with this process; it is short, so holding the
	// thread locked for its run is cheap.
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- cmd.Run()
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("devpg: initdb: %w\n%s", err, out.String())
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	return nil
}

// clusterVersion is the major version of the cluster in dir, "" when there
// is none yet.
func clusterVersion(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, "PG_VERSION"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dir); err == nil {
			return "", fmt.Errorf("devpg: %s exists but holds no PostgreSQL cluster (no PG_VERSION); move it away", dir)
		}
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("devpg: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// findBinaries returns the first directory holding initdb and postgres,
// looking on path, then in `pg_config --bindir`, then under libRoot/*/bin
// (Debian's layout, newest version first), with its `postgres --version`.
// When major is not "", only a directory of that major version will do.
func findBinaries(path, libRoot, major string) (dir, version string, err error) {
	dirs := filepath.SplitList(path)
	if pgConfig, err := lookPath(path, "pg_config"); err == nil {
		if out, err := exec.Command(pgConfig, "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	versions, _ := filepath.Glob(filepath.Join(libRoot, "*", "bin"))
	slices.SortFunc(versions, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, versions...)

	var found []string
	for _, d := range dirs {
		if d == "" || !executable(filepath.Join(d, "initdb")) || !executable(filepath.Join(d, "postgres")) {
			continue
		}
		// --version is answered before PostgreSQL's check for root.
		out, err := exec.Command(filepath.Join(d, "postgres"), "--version").Output()
		if err != nil {
			continue
		}
		version := "PostgreSQL " + versionNumber(string(out))
		if major == "" || majorOf(version) == major {
			return d, version, nil
		}
		found = append(found, version+" in "+d)
	}
	if len(found) == 0 {
		return "", "", ErrNoBinaries
	}
	return "", "", fmt.Errorf("devpg: the cluster was made by PostgreSQL %s, and only these binaries were found: %s; install PostgreSQL %s, or move the data directory away to start afresh",
		major, strings.Join(found, ", "), major)
}

// lookPath is exec.LookPath on the given PATH.
func lookPath(path, name string) (string, error) {
	for _, d := range filepath.SplitList(path) {
		if p := filepath.Join(d, name); d != "" && executable(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// versionOf is the number in a /usr/lib/postgresql/<n>/bin path, or 0.
func versionOf(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// versionNumber finds "15.14" in "postgres (PostgreSQL) 15.14 (Debian
// 15.14-0+deb12u1)", the output of postgres --version.
func versionNumber(out string) string {
	for _, f := range strings.Fields(out) {
		major, _, ok := strings.Cut(f, ".")
		if _, err := strconv.Atoi(major); err == nil && ok {
			return f
		}
	}
	return ""
}

// majorOf is the major version, as PG_VERSION writes it, of a version:
// "15" of "PostgreSQL 15.14", "9.6" of "PostgreSQL 9.6.24".
func majorOf(version string) string {
	parts := strings.Split(versionNumber(version), ".")
	if len(parts) < 2 {
		return ""
	}
	if n, _ := strconv.Atoi(parts[0]); n < 10 {
		return parts[0] + "." + parts[1]
	}
	return parts[0]
}

// unprivileged returns nil when this process is not root; otherwise the
// credentials of the account the server runs as ("postgres", else
// "nobody"), and its name.
func unprivileged() (*syscall.Credential, string, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return nil, strconv.Itoa(os.Geteuid()), nil
		}
		return nil, u.Username, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, name, nil
	}
	return nil, "", errors.New(`devpg: running as root, and neither a "postgres" nor a "nobody" account exists to run PostgreSQL as (it refuses root)`)
}

// fallbackPrefix begins the name of a directory made by clusterDir.
const fallbackPrefix = "switchboard-dev-"

// fallbackRoots are where clusterDir makes a directory for a cluster whose
// own place the server's account cannot reach, best first: the account's
// home directory when it is the account's own (Debian's postgres has
// /var/lib/postgresql), which nothing cleans; /var/tmp, which survives
// reboots but is cleaned of files long unused; the system's temporary
// directory. Links are resolved, so that the cluster's path is the
// server's working directory as /proc shows it (see running).
func fallbackRoots(account string, cred *syscall.Credential) []string {
	var candidates []string
	if u, err := user.Lookup(account); err == nil && u.HomeDir != "" {
		st, err := os.Stat(u.HomeDir)
		if sys, ok := statT(st, err); ok && st.IsDir() && sys.Uid == cred.Uid {
			candidates = append(candidates, u.HomeDir)
		}
	}
	candidates = append(candidates, "/var/tmp", os.TempDir())
	var roots []string
	for _, root := range candidates {
		if real, err := filepath.EvalSymlinks(root); err == nil && !slices.Contains(roots, real) {
			roots = append(roots, real)
		}
	}
	return roots
}

// statT is the system's stat of a successful os.Stat.
func statT(st os.FileInfo, err error) (*syscall.Stat_t, bool) {
	if err != nil {
		return nil, false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	return sys, ok
}

// clusterDir returns the directory the cluster of dir lives in when the
// server runs as account (this process being root): dir itself when the
// account can reach it; the directory dir links to, when an earlier run
// made that link; else a new directory of the account's own under a
// fallback root, with dir made a link to it.
//
// The directory a link leads to is trusted only when it is a real
// directory, owned by the account and writable by nobody else: under a
// world-writable root anyone may make a directory of that (visible) name,
// and this root process would then chown what it holds to the account.
func clusterDir(dir, account string, cred *syscall.Credential, log *slog.Logger) (string, error) {
	st, err := os.Lstat(dir)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("devpg: %w", err)
	}
	if exists && st.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(dir)
		if err != nil {
			return "", fmt.Errorf("devpg: %w", err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(dir), target)
		}
		home := filepath.Dir(target)
		if !strings.HasPrefix(filepath.Base(home), fallbackPrefix) || !slices.Contains(fallbackRoots(account, cred), filepath.Dir(home)) {
			// A link someone made: the account must reach where it points.
			if err := reachable(home, account, cred); err != nil {
				return "", err
			}
			return target, nil
		}
		switch err := ownHome(home, cred); {
		case err == nil:
			if err := reachable(home, account, cred); err != nil {
				return "", err
			}
			return target, nil
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
		// Cleaned away with the temporary files: start afresh.
		log.Warn("the cluster's directory is gone; making a new cluster", slog.String("link", dir), slog.String("dir", target))
		if err := os.Remove(dir); err != nil {
			return "", fmt.Errorf("devpg: %w", err)
		}
		exists = false
	}
	denied := reachable(filepath.Dir(dir), account, cred)
	if denied == nil {
		return dir, nil
	}
	if exists {
		// A cluster (or something) is there already: it is not moved.
		return "", denied
	}
	for _, root := range fallbackRoots(account, cred) {
		if reachable(root, account, cred) != nil {
			continue
		}
		home, err := os.MkdirTemp(root, fallbackPrefix)
		if err != nil {
			continue
		}
		if err := os.Chown(home, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.Remove(home)
			return "", fmt.Errorf("devpg: %w", err)
		}
		target := filepath.Join(home, filepath.Base(dir))
		if err := os.Symlink(target, dir); err != nil {
			_ = os.Remove(home)
			return "", fmt.Errorf("devpg: link the cluster's directory: %w", err)
		}
		log.Info("PostgreSQL's account cannot reach the data directory; the cluster lives in a directory of its own, linked from there",
			slog.String("account", account), slog.String("link", dir), slog.String("dir", target), slog.String("reason", denied.Error()))
		return target, nil
	}
	return "", denied
}

// ownHome checks that home is a real directory, owned by cred's account and
// writable by no one else.
func ownHome(home string, cred *syscall.Credential) error {
	st, err := os.Lstat(home)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !st.IsDir() || !ok || sys.Uid != cred.Uid || st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("devpg: %s is not a directory of PostgreSQL's account alone (made by someone else?); remove it and the link to it", home)
	}
	return nil
}

// reachable checks that the account can enter dir and each directory above
// it, which the server needs to reach its cluster.
func reachable(dir, account string, cred *syscall.Credential) error {
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("devpg: %w", err)
		}
		sys, ok := st.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := st.Mode().Perm()
		var can bool
		switch {
		case sys.Uid == cred.Uid:
			can = perm&0o100 != 0
		case sys.Gid == cred.Gid:
			can = perm&0o010 != 0
		default:
			can = perm&0o001 != 0
		}
		if !can {
			return fmt.Errorf("devpg: PostgreSQL refuses to run as root, so it runs as %q, which cannot enter %s (mode %04o): give it access (chmod o+x %s) or choose a data directory it can reach (for example --data-dir /var/tmp/switchboard)",
				account, d, perm, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// chownTree gives dir and everything in it to cred's account when dir's
// owner is another (a cluster made by another account, or files a root
// process left in it).
func chownTree(dir string, cred *syscall.Credential) error {
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == cred.Uid && st.Gid == cred.Gid {
			return nil
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
	if err != nil {
		return fmt.Errorf("devpg: give the cluster to its account: %w", err)
	}
	return nil
}

// recoverLock removes postmaster.pid when the process it names is gone or
// is not a postmaster of dir (a crashed run whose PID was reused; PostgreSQL
// would refuse to start then), and fails when a server still runs on dir.
func recoverLock(dir string, log *slog.Logger) error {
	lock := filepath.Join(dir, "postmaster.pid")
	b, err := os.ReadFile(lock)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		log.Warn("removing an unreadable postmaster.pid", slog.String("file", lock))
		return os.Remove(lock)
	}
	switch running(pid, dir) {
	case processGone:
		log.Warn("removing a stale postmaster.pid: its server is gone (crashed or killed)", slog.Int("pid", pid))
	case processOther:
		log.Warn("removing a stale postmaster.pid: its PID now belongs to another process", slog.Int("pid", pid))
	case processUnknown:
		return nil // PostgreSQL decides, and says why if it refuses
	case processServer:
		return fmt.Errorf("devpg: PostgreSQL (PID %d) is already running on %s: is another switchboard dev using this data directory?", pid, dir)
	}
	if err := os.Remove(lock); err != nil {
		return fmt.Errorf("devpg: %w", err)
	}
	return nil
}

type processState int

const (
	processGone    processState = iota
	processOther                // alive, but not a server of the directory
	processServer               // alive, working in the directory
	processUnknown              // alive; this system cannot tell more
)

// Alive reports whether process pid exists and, on Linux, is not a zombie
// (a dead child nobody has reaped yet).
func Alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	if runtime.GOOS != "linux" {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses; Z is a zombie.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || len(stat) <= i+2 || stat[i+2] != 'Z'
}

// running tells what process pid is to the cluster in dir. A postmaster
// works in its data directory, so on Linux its /proc cwd is dir.
func running(pid int, dir string) processState {
	if !Alive(pid) {
		return processGone
	}
	if runtime.GOOS != "linux" {
		return processUnknown
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return processUnknown
	}
	if cwd == dir {
		return processServer
	}
	return processOther
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("devpg: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// logSince is what the server log gained after offset, for error messages.
func logSince(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 16<<10))
	return strings.TrimSpace(string(b))
}
