-- +goose Up
-- room_lexemes (00022) made the index keys with a sub-select over the
-- lexemes; a function with a sub-select cannot be inlined, so every insert
-- statement planned its body again and ran it as a query for each row (a
-- profile of the save under load: 7 % of its CPU). This body is one
-- expression of immutable functions, which the planner inlines into the
-- index expression and into searches alike: the tsvector's text form with
-- positions stripped ('a' 'b' 'it''s') has the room put after each
-- lexeme's opening quote, and is read back as a tsvector.
--
-- The keys are the same as 00022's for every tsvector the text search
-- parser makes (TestRoomLexemesMigration compares them), so the index is
-- kept as it is. That rests on lexemes never holding a space: in the text
-- form every space then separates two lexemes, and quote-space-quote is
-- only ever the end of one lexeme and the start of the next.
--
-- A connection that used the index before keeps the index expression it
-- read then (the call, not inlined) until something invalidates the
-- index's cache entry, and its searches would not match the index: the
-- ALTER INDEX (a no-op setting) is that invalidation, for every session.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION room_lexemes(room_id bigint, search tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN length(search) > 0
                THEN ('''' || room_id::text || ' '
                      || replace(substr(strip(search)::text, 2), ''' ''', ''' ''' || room_id::text || ' '))::tsvector
                ELSE ''::tsvector
           END;
-- +goose StatementEnd
ALTER INDEX messages_search_idx SET (fastupdate = off);

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION room_lexemes(room_id bigint, search tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN array_to_tsvector(ARRAY(SELECT room_id || ' ' || w FROM unnest(tsvector_to_array(search)) w));
-- +goose StatementEnd
ALTER INDEX messages_search_idx SET (fastupdate = off);
