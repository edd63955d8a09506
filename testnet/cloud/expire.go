package cloud

import "time"

// ExpireUpdates ends the lifetime of every prepared update now, as the
// real service does after its token's lifetime: committing one answers
// 466 and the client must prepare it again. It returns how many expired.
func (s *Server) ExpireUpdates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for _, u := range s.updates {
		u.expires = past
	}
	return len(s.updates)
}
