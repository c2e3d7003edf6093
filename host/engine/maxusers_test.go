package engine

import "testing"

// Config.MaxUsers sizes the user id space that TestUserIDSpaceFullRefuses
// shows refusing past its limit: a partition of P holds 2^32/P users.
func TestConfigMaxUsers(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ cfg, want uint64 }{{0, MaxUsers}, {2, 2}, {1 << 30, 1 << 30}, {MaxUsers + 1, MaxUsers}} {
		if got := New(Config{MaxUsers: c.cfg}).users.limit; got != c.want {
			t.Errorf("MaxUsers %d: limit %d, want %d", c.cfg, got, c.want)
		}
	}
}
