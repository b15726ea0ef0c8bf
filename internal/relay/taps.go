package relay

// Taps fans one relay's data out to several taps (an audit parser and a
// session recorder, say), in order. Nil entries are skipped.
type Taps []Tap

// Data passes p to every tap.
func (t Taps) Data(s Stream, p []byte) {
	for _, x := range t {
		if x != nil {
			x.Data(s, p)
		}
	}
}
