package chat

import "time"

// Roles of room members (SPEC §14).
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// MaxTopicChars bounds a room's topic (SPEC §14).
const MaxTopicChars = 250

// Search and people look-up page sizes.
const (
	DefaultSearchLimit = 20
	MaxSearchLimit     = 100
	MaxPeopleResults   = 20
)

// Member is a room member with their role.
type Member struct {
	User User   `json:"user"`
	Role string `json:"role"`
}

// Ban is a user banned from a room, by whom and since when.
type Ban struct {
	User      User      `json:"user"`
	By        *User     `json:"by"` // nil when that account is gone
	CreatedAt time.Time `json:"created_at"`
}

// RoomUpdate changes a room's name or topic; nil leaves it as it is.
type RoomUpdate struct {
	Name  *string
	Topic *string
}

// SearchQuery is a search of the messages of the rooms UserID belongs to.
type SearchQuery struct {
	UserID string
	Query  string
	RoomID string // "": every room of the user
	Limit  int
	Cursor string // "": the first page
}

// SearchHit is one search result: a message and its room.
type SearchHit struct {
	Message Message  `json:"message"`
	Room    RoomName `json:"room"`
}

// RoomName names a room in a search result; Name is null for a direct room.
type RoomName struct {
	ID   string  `json:"id"`
	Name *string `json:"name"`
}

// SearchPage is a page of search results.
type SearchPage struct {
	Results    []SearchHit `json:"results"`
	NextCursor *string     `json:"next_cursor"`
}
