package sshd

// Observer is told what happens at the front door, for metrics. Its
// methods must not block.
type Observer interface {
	ConnAccepted()
	ConnRejected(reason string) // "draining", "unauthenticated_limit", "per_source_limit", "banned", "proxy_*" (proxy.go)
	ConnEvicted(reason string)  // "unauthenticated_limit" or "per_source_limit": closed to make room
	Handshake(ok bool)          // key exchange and authentication finished (or failed)
}

func (s *Server) observeAccepted() {
	if s.obs != nil {
		s.obs.ConnAccepted()
	}
}

func (s *Server) observeRejected(draining, unauthFull bool) {
	if s.obs == nil {
		return
	}
	switch {
	case draining:
		s.obs.ConnRejected("draining")
	case unauthFull:
		s.obs.ConnRejected("unauthenticated_limit")
	default:
		s.obs.ConnRejected("per_source_limit")
	}
}

func (s *Server) observeEvicted(reason string) {
	if s.obs != nil {
		s.obs.ConnEvicted(reason)
	}
}

func (s *Server) observeReason(reason string) {
	if s.obs != nil {
		s.obs.ConnRejected(reason)
	}
}

func (s *Server) observeBanned() {
	if s.obs != nil {
		s.obs.ConnRejected("banned")
	}
}

func (s *Server) observeHandshake(err error) {
	if s.obs != nil {
		s.obs.Handshake(err == nil)
	}
}
