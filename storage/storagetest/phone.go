package storagetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboard-chat/switchboard/chat"
	"github.com/switchboard-chat/switchboard/storage"
)

// VerifyPhone gives the account userID the verified number phone through
// the steps of SPEC §8 in storage (set it, make a code, enter it), without
// a job queue or Twilio, for tests of what verified numbers do. It uses one
// of the account's codes per hour. Caches in front of the pool do not hear
// of the change.
func VerifyPhone(t testing.TB, pool *pgxpool.Pool, userID, phone string) {
	t.Helper()
	var codeID string
	job := func(_, id string) (chat.Job, error) {
		return chat.Job{Key: "storagetest-code:" + id, Type: "storagetest:code", Payload: []byte{}, RunAt: time.Now(), CheckAt: time.Now()}, nil
	}
	store := storage.New(pool, storage.WithPhoneCodes(job, func(_ context.Context, j chat.Job) error {
		codeID = strings.TrimPrefix(j.Key, "storagetest-code:")
		return nil
	}))
	ctx := t.Context()
	if _, err := store.UpdateProfile(ctx, userID, chat.ProfileUpdate{Phone: &phone}); err != nil {
		t.Fatalf("storagetest: set phone: %v", err)
	}
	if codeID == "" {
		t.Fatalf("storagetest: no code asked for %s (already its verified number?)", phone)
	}
	hash := []byte("storagetest code")
	c, err := store.ClaimPhoneCode(ctx, userID, codeID, hash, time.Minute)
	if err == nil && !c.Claimed {
		err = fmt.Errorf("code %s not claimed: %+v", codeID, c)
	}
	if err == nil {
		err = store.MarkPhoneCodeSent(ctx, c)
	}
	if err == nil {
		err = store.FinishJob(ctx, "storagetest-code:"+codeID, "") // the job ran
	}
	if err != nil {
		t.Fatalf("storagetest: make code: %v", err)
	}
	if _, err := store.VerifyPhone(ctx, userID, hash); err != nil {
		t.Fatalf("storagetest: verify phone: %v", err)
	}
}
