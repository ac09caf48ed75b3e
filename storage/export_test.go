package storage

// The queries whose plans the tests check (search_scale_test.go).
const (
	SearchSQL    = searchSQL
	FindUsersSQL = findUsersSQL
)

// RoomQueries is roomQueries, for its test.
var RoomQueries = roomQueries
