package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/auth"
	"github.com/switchboard-chat/switchboard/integrations"
	"github.com/switchboard-chat/switchboard/integrations/jobs"
	"github.com/switchboard-chat/switchboard/integrations/slack"
	"github.com/switchboard-chat/switchboard/integrations/twilio"
	"github.com/switchboard-chat/switchboard/poster"
	"github.com/switchboard-chat/switchboard/storage"
)

// jobKinds are every job type, whichever integrations are on, so that the
// jobs CLI sees every queue.
var jobKinds = []jobs.Kind{integrations.FanoutKind, twilio.SMSKind, twilio.CodeKind, slack.PostKind, slack.MirrorKind, slack.EventKind}

// newQueue returns the job queue on rdb, recording its jobs in journal
// (nil: a queue that only reads, for the jobs CLI).
func newQueue(cfg *config, rdb redis.UniversalClient, journal jobs.Journal, reg prometheus.Registerer, log *slog.Logger) (*jobs.Queue, error) {
	jc := jobs.Config{Redis: rdb, Prefix: cfg.RedisPrefix, Kinds: jobKinds, Journal: journal, Registerer: reg,
		Logger: log.With(slog.String("component", "jobs"))}
	if cfg.tuneJobs != nil {
		cfg.tuneJobs(&jc)
	}
	return jobs.New(jc)
}

// storeOptions turn on what the store does for the integrations that are
// on: outbox rows for messages, and verification codes for phone numbers.
func storeOptions(cfg *config, q *jobs.Queue) []storage.Option {
	opts := []storage.Option{storage.WithOutbox(storage.Outbox{SMS: cfg.smsOn(), Slack: cfg.slackOn()})}
	if cfg.smsOn() {
		opts = append(opts, storage.WithPhoneCodes(twilio.CodeJob(q), q.Push))
	}
	return opts
}

// workers are the job handlers and the outbox relay of the integrations
// that are on.
type workers struct {
	queue    *jobs.Queue
	relay    *integrations.Relay
	handlers map[string]jobs.Handler
	log      *slog.Logger
}

func newWorkers(cfg *config, b *base, post *poster.Poster, online integrations.Presence, tokens *auth.Tokens, log *slog.Logger) (*workers, error) {
	q, store := b.queue, b.store
	w := &workers{
		queue: q,
		relay: &integrations.Relay{Store: store, Queue: q, Logger: log.With(slog.String("component", "outbox"))},
		log:   log,
		handlers: map[string]jobs.Handler{
			integrations.FanoutKind.Type: (&integrations.Fanout{
				Store: store, Presence: online, Queue: q, SMS: cfg.smsOn(), Slack: cfg.slackOn(),
			}).Handle,
		},
	}
	if cfg.smsOn() {
		sender, err := twilio.NewSender(cfg.Twilio)
		if err != nil {
			return nil, err
		}
		gap := cfg.smsGap
		if gap == 0 {
			gap = twilio.Throttle
		}
		breaker := q.NewBreaker("twilio")
		w.handlers[twilio.SMSKind.Type] = twilio.HandleSMS(store, sender, breaker, q, gap)
		w.handlers[twilio.CodeKind.Type] = twilio.HandleCode(store, sender, breaker, tokens.HashPhoneCode)
	}
	if cfg.slackOn() {
		api := slack.NewAPI(slack.APIConfig{BotToken: cfg.Slack.BotToken, APIURL: cfg.Slack.APIURL})
		breaker := q.NewBreaker("slack")
		w.handlers[slack.PostKind.Type] = slack.HandlePost(store, api, breaker)
		w.handlers[slack.MirrorKind.Type] = slack.HandleMirror(store, api, breaker)
		w.handlers[slack.EventKind.Type] = slack.HandleEventTask(store, post)
	}
	return w, nil
}

// run relays the outbox and runs the job handlers until ctx ends.
func (w *workers) run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.relay.Run(ctx)
	}()
	err := w.queue.Work(ctx, w.handlers)
	wg.Wait()
	return err
}

// webhooks returns the routes of the integrations that are on; the others'
// paths answer 404 (SPEC §12).
func webhooks(cfg *config, public string, store *storage.Store, post *poster.Poster, q *jobs.Queue, log *slog.Logger) (map[string]http.Handler, error) {
	routes := map[string]http.Handler{}
	if cfg.smsOn() {
		sms, err := twilio.NewWebhook(twilio.WebhookConfig{
			AuthToken: cfg.Twilio.AuthToken,
			URL:       public + "/webhooks/twilio/sms",
			Store:     store,
			Poster:    post,
			Logger:    log.With(slog.String("component", "twilio")),
		})
		if err != nil {
			return nil, fmt.Errorf("twilio webhook: %w", err)
		}
		routes["POST /webhooks/twilio/sms"] = sms
	}
	if cfg.slackOn() {
		sc := slack.WebhookConfig{
			SigningSecret: cfg.Slack.SigningSecret,
			Store:         store,
			Poster:        post,
			Queue:         q,
			Logger:        log.With(slog.String("component", "slack")),
		}
		commands, err := slack.NewCommandsHandler(sc)
		if err != nil {
			return nil, fmt.Errorf("slack commands: %w", err)
		}
		events, err := slack.NewEventsHandler(sc)
		if err != nil {
			return nil, fmt.Errorf("slack events: %w", err)
		}
		routes["POST /webhooks/slack/commands"] = commands
		routes["POST /webhooks/slack/events"] = events
	}
	return routes, nil
}
