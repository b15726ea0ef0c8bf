package recording

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// MaxLine bounds one line of a recording (a 64 KiB chunk escaped as JSON
// stays well below it).
const MaxLine = 4 << 20

// ParseError names the line of a recording that is malformed.
type ParseError struct {
	Line int
	Msg  string
}

func (e *ParseError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Reader reads an asciicast v2 file: the header, then one event at a time.
type Reader struct {
	r      *bufio.Reader
	line   int
	last   float64
	Header Header
}

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	b, err := rd.next()
	if err == io.EOF {
		return nil, &ParseError{Line: 1, Msg: "empty file, want an asciicast v2 header"}
	}
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var h Header
	if err := dec.Decode(&h); err != nil || dec.More() {
		return nil, &ParseError{Line: rd.line, Msg: "not an asciicast header (want a JSON object)"}
	}
	if h.Version != 2 {
		return nil, &ParseError{Line: rd.line, Msg: fmt.Sprintf("asciicast version %d, want 2", h.Version)}
	}
	if h.Width <= 0 || h.Height <= 0 || h.Width > 10000 || h.Height > 10000 {
		return nil, &ParseError{Line: rd.line, Msg: fmt.Sprintf("terminal size %dx%d out of range", h.Width, h.Height)}
	}
	rd.Header = h
	return rd, nil
}

// next returns the next non-empty line without its newline.
func (rd *Reader) next() ([]byte, error) {
	for {
		var line []byte
		for {
			chunk, err := rd.r.ReadSlice('\n')
			line = append(line, chunk...)
			if len(line) > MaxLine {
				return nil, &ParseError{Line: rd.line + 1, Msg: fmt.Sprintf("line longer than %d bytes", MaxLine)}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err == io.EOF && len(line) > 0 {
				break
			}
			if err != nil {
				if err == io.EOF {
					return nil, io.EOF
				}
				return nil, fmt.Errorf("read recording: %w", err)
			}
			break
		}
		rd.line++
		line = bytes.TrimRight(line, "\r\n")
		if len(bytes.TrimSpace(line)) > 0 {
			return line, nil
		}
	}
}

// Line is the number of the line last read.
func (rd *Reader) Line() int { return rd.line }

// Next returns the next event, or io.EOF at the end.
func (rd *Reader) Next() (Event, error) {
	b, err := rd.next()
	if err != nil {
		return Event{}, err
	}
	bad := func(format string, args ...any) (Event, error) {
		return Event{}, &ParseError{Line: rd.line, Msg: fmt.Sprintf(format, args...)}
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return bad("not an event (want [time, type, data])")
	}
	if len(raw) != 3 {
		return bad("event has %d fields, want 3", len(raw))
	}
	var e Event
	if json.Unmarshal(raw[0], &e.Time) != nil || math.IsNaN(e.Time) || math.IsInf(e.Time, 0) || e.Time < 0 {
		return bad("event time is not a non-negative number")
	}
	if e.Time < rd.last {
		return bad("event time %g is before the previous event's %g", e.Time, rd.last)
	}
	rd.last = e.Time
	if json.Unmarshal(raw[1], &e.Type) != nil || e.Type == "" || len(e.Type) > 16 {
		return bad("event type is not a short string")
	}
	if json.Unmarshal(raw[2], &e.Data) != nil {
		return bad("event data is not a string")
	}
	if e.Type == "r" {
		if _, _, ok := ParseSize(e.Data); !ok {
			return bad("resize event %q is not COLSxROWS", e.Data)
		}
	}
	return e, nil
}

// ParseSize parses "COLSxROWS".
func ParseSize(s string) (cols, rows int, ok bool) {
	c, r, found := strings.Cut(s, "x")
	if !found {
		return 0, 0, false
	}
	cols, err1 := strconv.Atoi(c)
	rows, err2 := strconv.Atoi(r)
	if err1 != nil || err2 != nil || cols <= 0 || rows <= 0 || cols > 10000 || rows > 10000 {
		return 0, 0, false
	}
	return cols, rows, true
}

// ReadAll reads a whole recording.
func ReadAll(r io.Reader) (Header, []Event, error) {
	rd, err := NewReader(r)
	if err != nil {
		return Header{}, nil, err
	}
	var evs []Event
	for {
		e, err := rd.Next()
		if err == io.EOF {
			return rd.Header, evs, nil
		}
		if err != nil {
			return rd.Header, evs, err
		}
		evs = append(evs, e)
	}
}
