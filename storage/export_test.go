package storage

import (
	"context"

	"github.com/switchboard-chat/switchboard/chat"
)

// The queries whose plans the tests check (search_scale_test.go).
const (
	SearchSQL    = searchSQL
	FindUsersSQL = findUsersSQL
)

// RoomQueries is roomQueries, for its test.
var RoomQueries = roomQueries

// SaveBatch stores nms as one group-commit batch, as when they all arrive
// while another batch is being saved, and returns each one's status and
// message (created or repeated).
func (s *Store) SaveBatch(ctx context.Context, nms []chat.NewMessage) ([]string, []chat.Message, error) {
	calls := make([]*saveCall, len(nms))
	for i, nm := range nms {
		c, err := newSaveCall(nm)
		if err != nil {
			return nil, nil, err
		}
		calls[i] = c
	}
	if err := s.saveTogether(ctx, calls); err != nil {
		return nil, nil, err
	}
	statuses, msgs := make([]string, len(calls)), make([]chat.Message, len(calls))
	for i, c := range calls {
		statuses[i], msgs[i] = c.status, c.msg
	}
	return statuses, msgs, nil
}
