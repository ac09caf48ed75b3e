package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/switchboard-chat/switchboard/chat"
)

// searchSQL finds the messages of the user's rooms ($1, narrowed to room
// $2 when not null) that match the web-search query $3, best first. The
// GIN index messages_search_idx (migration 00020) holds each message's
// words and its room as the lexeme 'room <id>': one bitmap scan for
// (the words) & ('room a' | 'room b' | ...) finds the matches in the
// searcher's rooms, and only those are ranked; the message rows of the
// page are read after ranking. $4 bounds ids to those that existed when
// the first page was read; ($5, $6) is the (rank, id) the previous page
// ended on. A query with no word to find (empty, or only -words: its
// querytree is empty or T) finds nothing rather than every message.
const searchSQL = `
	WITH hits AS (
		SELECT m.id, ts_rank(m.search, websearch_to_tsquery('switchboard', $3)) AS rank
		  FROM messages m
		 WHERE (m.search || array_to_tsvector(ARRAY['room ' || m.room_id])) @@
		       (websearch_to_tsquery('switchboard', $3) &&
		        (SELECT string_agg(quote_literal('room ' || rm.room_id), ' | ')::tsquery
		           FROM room_members rm WHERE rm.user_id = $1 AND ($2::bigint IS NULL OR rm.room_id = $2)))
		   AND querytree(websearch_to_tsquery('switchboard', $3)) NOT IN ('', 'T')
		   AND m.deleted_at IS NULL
		   AND m.id <= $4
		   AND ($5::real IS NULL
		        OR (ts_rank(m.search, websearch_to_tsquery('switchboard', $3)), m.id) < ($5::real, $6::bigint))
		 ORDER BY rank DESC, m.id DESC
		 LIMIT $7
	)
	SELECT h.rank, r.name, ` + messageColumns + messageFrom + `
	  JOIN hits h ON h.id = m.id
	  JOIN rooms r ON r.id = m.room_id
	 ORDER BY h.rank DESC, m.id DESC`

// searchCursor is where a page of search results ended.
type searchCursor struct {
	maxID  int64   // the newest message id when the first page was read
	rank   float32 // the last result's rank and id
	lastID int64
}

func (c searchCursor) String() string {
	raw := fmt.Sprintf("%d.%d.%d", c.maxID, math.Float32bits(c.rank), c.lastID)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

var errBadSearchCursor = chat.Errorf(chat.CodeBadRequest, "unknown cursor")

func parseSearchCursor(s string) (searchCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return searchCursor{}, errBadSearchCursor
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 {
		return searchCursor{}, errBadSearchCursor
	}
	maxID, err1 := strconv.ParseInt(parts[0], 10, 64)
	bits, err2 := strconv.ParseUint(parts[1], 10, 32)
	lastID, err3 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return searchCursor{}, errBadSearchCursor
	}
	return searchCursor{maxID: maxID, rank: math.Float32frombits(uint32(bits)), lastID: lastID}, nil
}

// Search returns a page of the messages of q.UserID's rooms that match
// q.Query (websearch_to_tsquery syntax: all words, "a phrase", -word),
// best match first, deleted messages never. Paging is stable: each page
// continues from where the last ended, among the messages that existed
// when the first page was read, so none repeats and none is skipped while
// new ones arrive. A room filter the user is not a member of gets the
// error of CheckMember.
func (s *Store) Search(ctx context.Context, q chat.SearchQuery) (chat.SearchPage, error) {
	uid, err := parseID(q.UserID)
	if err != nil {
		return chat.SearchPage{}, err
	}
	var room *int64
	if q.RoomID != "" {
		rid, err := parseID(q.RoomID)
		if err != nil {
			return chat.SearchPage{}, err
		}
		if err := checkMember(ctx, s.db, uid, rid); err != nil {
			return chat.SearchPage{}, wrap("search", err)
		}
		room = &rid
	}
	var cur searchCursor
	var rank *float32
	var lastID *int64
	if q.Cursor != "" {
		if cur, err = parseSearchCursor(q.Cursor); err != nil {
			return chat.SearchPage{}, err
		}
		rank, lastID = &cur.rank, &cur.lastID
	} else if err := s.db.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM messages`).Scan(&cur.maxID); err != nil {
		return chat.SearchPage{}, wrap("search", err)
	}
	var page chat.SearchPage
	var ranks []float32
	// Planned for each search with its words (an unnamed statement): a
	// plan cached for any words (the generic plan pgx's prepared statements
	// switch to) cannot tell common words from rare ones, and was measured
	// at 64 ms where the words' own plan takes 1.4 ms.
	rows, err := s.db.Query(ctx, searchSQL, pgx.QueryExecModeExec, uid, room, q.Query, cur.maxID, rank, lastID, q.Limit+1)
	if err != nil {
		return chat.SearchPage{}, wrap("search", err)
	}
	hits, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chat.SearchHit, error) {
		var h chat.SearchHit
		var r float32
		m, err := scanMessage(row, &r, &h.Room.Name)
		h.Message, h.Room.ID = m, m.RoomID
		ranks = append(ranks, r)
		return h, err
	})
	if err != nil {
		return chat.SearchPage{}, wrap("search", err)
	}
	if len(hits) > q.Limit {
		hits = hits[:q.Limit]
		last, _ := parseID(hits[len(hits)-1].Message.ID)
		next := searchCursor{maxID: cur.maxID, rank: ranks[len(hits)-1], lastID: last}.String()
		page.NextCursor = &next
	}
	page.Results = hits
	return page, nil
}

// findUsersSQL: each side of the OR is a range scan of its own index
// (migration 00020), also as a generic plan, which LIKE $1 would not be.
const findUsersSQL = `
	SELECT id, username, display_name FROM users
	 WHERE ((lower(username) ~>=~ lower($1) AND lower(username) ~<~ (lower($1) || chr(1114111)))
	     OR (lower(display_name) ~>=~ lower($1) AND lower(display_name) ~<~ (lower($1) || chr(1114111))))
	   AND password_hash IS NOT NULL
	 ORDER BY lower(username) LIMIT $2`

// FindUsers returns up to limit accounts that can sign in whose username
// or display name starts with prefix in any letter case, by username.
func (s *Store) FindUsers(ctx context.Context, prefix string, limit int) ([]chat.User, error) {
	rows, err := s.db.Query(ctx, findUsersSQL, prefix, limit)
	if err != nil {
		return nil, wrap("find users", err)
	}
	users, err := pgx.CollectRows(rows, scanUser)
	return users, wrap("find users", err)
}
