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

// searchScopeSQL reads what a search needs before it runs: the part of
// the web-search query $1 an index can answer (querytree: the query
// without its -words; empty or T when nothing is left to look for), the
// rooms of user $2 it covers (narrowed to room $3 when not null), and,
// for a first page ($4), the newest message id.
const searchScopeSQL = `
	SELECT querytree(websearch_to_tsquery('switchboard', $1)),
	       ARRAY(SELECT room_id FROM room_members WHERE user_id = $2 AND ($3::bigint IS NULL OR room_id = $3)),
	       CASE WHEN $4 THEN (SELECT COALESCE(max(id), 0) FROM messages) END`

// searchSQL finds the messages that match the web-search query $1, best
// first. The GIN index messages_search_idx (migration 00022) is keyed by
// '<room> <word>': each query of $2 (one a room, from roomQueries) is a
// scan of its own that finds the room's messages with all the words, and
// m.search @@ then checks the exact query (phrases, -words) on each. $3
// bounds ids to those that existed when the first page was read; ($4, $5)
// is the (rank, id) the previous page ended on.
const searchSQL = `
	WITH hits AS (
		SELECT m.id, ts_rank(m.search, websearch_to_tsquery('switchboard', $1)) AS rank
		  FROM messages m
		 WHERE room_lexemes(m.room_id, m.search) @@ ANY ($2::tsquery[])
		   AND m.search @@ websearch_to_tsquery('switchboard', $1)
		   AND m.deleted_at IS NULL
		   AND m.id <= $3
		   AND ($4::real IS NULL
		        OR (ts_rank(m.search, websearch_to_tsquery('switchboard', $1)), m.id) < ($4::real, $5::bigint))
		 ORDER BY rank DESC, m.id DESC
		 LIMIT $6
	)
	SELECT h.rank, r.name, ` + messageColumns + messageFrom + `
	  JOIN hits h ON h.id = m.id
	  JOIN rooms r ON r.id = m.room_id
	 ORDER BY h.rank DESC, m.id DESC`

// roomQueries turns tree, the text of a query without negations (what
// querytree answers), into the query the index answers for each room:
// every lexeme '<word>' becomes '<room> <word>' and every phrase operator
// (<->, <N>) becomes &, as the index keeps no positions. The result finds
// every message of the room that matches tree, and some that do not (the
// words out of order), which the exact query then leaves out.
func roomQueries(tree string, rooms []int64) ([]string, error) {
	// parts are the text between the points where a room goes.
	var parts []string
	var b strings.Builder
	for i := 0; i < len(tree); i++ {
		switch c := tree[i]; c {
		case '\'':
			// A lexeme, its quotes doubled: 'it''s'.
			b.WriteByte(c)
			parts = append(parts, b.String())
			b.Reset()
			b.WriteByte(' ')
			for i++; ; i++ {
				if i == len(tree) {
					return nil, fmt.Errorf("search: unterminated lexeme in %q", tree)
				}
				b.WriteByte(tree[i])
				if tree[i] == '\'' {
					if i+1 < len(tree) && tree[i+1] == '\'' {
						i++
						b.WriteByte('\'')
						continue
					}
					break
				}
			}
		case '<':
			end := strings.IndexByte(tree[i:], '>')
			if end < 0 {
				return nil, fmt.Errorf("search: unterminated operator in %q", tree)
			}
			b.WriteByte('&')
			i += end
		default:
			b.WriteByte(c)
		}
	}
	parts = append(parts, b.String())
	queries := make([]string, len(rooms))
	for i, room := range rooms {
		queries[i] = strings.Join(parts, strconv.FormatInt(room, 10))
	}
	return queries, nil
}

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
	}
	var tree string
	var rooms []int64
	var maxID *int64
	if err := s.db.QueryRow(ctx, searchScopeSQL, q.Query, uid, room, q.Cursor == "").Scan(&tree, &rooms, &maxID); err != nil {
		return chat.SearchPage{}, wrap("search", err)
	}
	if maxID != nil {
		cur.maxID = *maxID
	}
	if tree == "" || tree == "T" || len(rooms) == 0 {
		// Nothing to look for (no word, or only -words), or nowhere.
		return chat.SearchPage{Results: []chat.SearchHit{}}, nil
	}
	queries, err := roomQueries(tree, rooms)
	if err != nil {
		return chat.SearchPage{}, err
	}
	var page chat.SearchPage
	var ranks []float32
	// Planned for each search with its words (an unnamed statement): a
	// plan cached for any words (the generic plan pgx's prepared statements
	// switch to) cannot tell common words from rare ones, and was measured
	// at 64 ms where the words' own plan takes 1.4 ms.
	rows, err := s.db.Query(ctx, searchSQL, pgx.QueryExecModeExec, q.Query, queries, cur.maxID, rank, lastID, q.Limit+1)
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
