package storage_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// BenchmarkSaveBatch measures one group-commit batch of 1, 8 and 32 sends,
// each into a room of 4 of its own (the load test's shape), on one
// connection. It reports the wall time per message and, when Postgres runs
// on this machine, its backend's CPU per message (utime+stime of the
// connection's backend process).
func BenchmarkSaveBatch(b *testing.B) {
	for _, size := range []int{1, 8, 32} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			bundle := setup(b)
			cfg := bundle.pool.Config()
			cfg.MaxConns = 1
			pool, err := pgxpool.NewWithConfig(bundle.ctx, cfg)
			require.NoError(b, err)
			b.Cleanup(pool.Close)
			store := storage.New(pool)
			batch := make([]chat.NewMessage, size)
			for i := range batch {
				sender := bundle.user(b, fmt.Sprint("sender", i))
				r := bundle.room(b, sender.ID, fmt.Sprint("room", i), chat.Public)
				for j := range 3 {
					bundle.join(b, bundle.user(b, fmt.Sprint("member", i, "_", j)).ID, r.ID)
				}
				batch[i] = chat.NewMessage{RoomID: r.ID, SenderID: sender.ID, Body: "hello there", Source: chat.SourceWeb}
			}
			var pid int
			require.NoError(b, pool.QueryRow(bundle.ctx, `SELECT pg_backend_pid()`).Scan(&pid))
			cpu0, cpuOK := backendCPU(pid)
			start := time.Now()
			for b.Loop() {
				statuses, _, err := store.SaveBatch(bundle.ctx, batch)
				require.NoError(b, err)
				require.Equal(b, "created", statuses[size-1])
			}
			msgs := float64(b.N * size)
			b.ReportMetric(float64(time.Since(start).Nanoseconds())/msgs, "ns/msg")
			if cpu1, ok := backendCPU(pid); ok && cpuOK {
				b.ReportMetric(float64((cpu1-cpu0).Microseconds())/msgs, "pg-µs/msg")
			}
		})
	}
}

// backendCPU reads the CPU time a local Postgres backend has used.
func backendCPU(pid int) (time.Duration, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th of them, in clock ticks of 10 ms.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}
