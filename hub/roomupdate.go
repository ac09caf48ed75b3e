package hub

import (
	"context"

	"github.com/switchboard-chat/switchboard/chat"
)

// roomUpdateFrame tells a room's subscribed connections that its name,
// topic or archived state changed (SPEC §14; docs/protocol.md).
type roomUpdateFrame struct {
	Type string    `json:"type"` // "room_update"
	Room roomState `json:"room"`
}

// roomState is a room as every member sees it, without anyone's cursors.
type roomState struct {
	ID         string  `json:"id"`
	Name       *string `json:"name"` // null for a direct room
	Visibility string  `json:"visibility"`
	Topic      string  `json:"topic"`
	Archived   bool    `json:"archived"`
}

// RoomUpdated sends room's new state to the connections subscribed to it
// on every node, as an ephemeral event: it is not stored, and a client
// that missed it reads the room again from GET /api/v1/rooms.
func (h *Hub) RoomUpdated(ctx context.Context, room chat.Room) {
	st := roomState{ID: room.ID, Visibility: room.Visibility, Topic: room.Topic, Archived: room.Archived}
	if room.Visibility != chat.Direct {
		st.Name = &room.Name
	}
	h.publish(ctx, Event{Room: room.ID, Frame: encode(roomUpdateFrame{Type: "room_update", Room: st})})
}
