-- +goose Up
-- Search indexes each word of a message together with its room, so that
-- a search reads only the postings of its words in the searcher's rooms.
--
-- Migration 00020 indexed the words and one lexeme per room, and a search
-- asked for (its words) & ('room 1' | ... | 'room 50'): every message of
-- the searcher's rooms was a candidate (50,000 for a member of 50 rooms of
-- 1,000 messages), each checked against a query tree of 50 alternatives,
-- which took 25-30 ms of the 45 ms that two common words cost over
-- 1,000,000 messages. Here the index key is '<room id> <word>' (the parser
-- never makes a lexeme with a space, so no text can forge another room's
-- key) and a search runs one small index scan per room of the searcher
-- (storage.Search): a candidate is a message that has all the words, in
-- that room (3-4 ms for the same search).
--
-- The keys carry no positions: building a vector with positions from SQL
-- means printing and parsing it, eight times the cost per message. The
-- index answers the query with its phrases relaxed to "all these words";
-- the message's own vector (the search column) then checks the exact
-- query.
--
-- fastupdate is off: with a pending list, each of a search's per-room
-- scans reads the whole list again (up to 4 MB: 3 ms became 35 ms with a
-- quarter of it full), and the insert that flushes the list waits for
-- the whole merge. Without it, each message pays for its keys as it is
-- stored (measured at about 10 % more than pending-list inserts and their
-- later flush, per message).
-- +goose StatementBegin
CREATE FUNCTION room_lexemes(room_id bigint, search tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN array_to_tsvector(ARRAY(SELECT room_id || ' ' || w FROM unnest(tsvector_to_array(search)) w));
-- +goose StatementEnd
DROP INDEX messages_search_idx;
CREATE INDEX messages_search_idx ON messages USING gin (room_lexemes(room_id, search)) WITH (fastupdate = off);

-- +goose Down
DROP INDEX messages_search_idx;
DROP FUNCTION room_lexemes(bigint, tsvector);
CREATE INDEX messages_search_idx ON messages
    USING gin ((search || array_to_tsvector(ARRAY['room ' || room_id])));
