package audit

// Readier is a sink that can tell, before a request is served, whether it
// is able to record: a proxy that fails closed asks it first and answers
// 503 without forwarding when it cannot.
type Readier interface {
	Ready() error
}

// Ready reports whether s can record now: the sink's own Ready, for a Multi
// the first member that cannot, nil for sinks that do not say (and for
// FailOpen, which never fails a request).
func Ready(s Sink) error {
	switch s := s.(type) {
	case FailOpen:
		return nil
	case Multi:
		for _, m := range s {
			if err := Ready(m); err != nil {
				return err
			}
		}
		return nil
	case Readier:
		return s.Ready()
	}
	return nil
}
