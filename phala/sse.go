package phala

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// maxSSELine bounds one line of an event stream.
const maxSSELine = 1 << 20

// sseEvent is one dispatched server-sent event.
type sseEvent struct {
	name string // "message" when the stream names none
	data string // data lines joined with "\n"
}

// sseReader parses a text/event-stream body. Following the SSE spec, an
// event is dispatched only at the blank line that ends it, so a stream cut
// in the middle of an event yields io.ErrUnexpectedEOF and never a partial
// event.
type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10)}
}

var errSSELineTooLong = errors.New("event stream line too long")

// next returns the next event, io.EOF at a clean end of stream, or
// io.ErrUnexpectedEOF when the stream ends inside an event.
func (s *sseReader) next() (sseEvent, error) {
	var name string
	var data []string
	pending := false // a field of the current event was read
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if pending || line != "" {
					return sseEvent{}, io.ErrUnexpectedEOF
				}
				return sseEvent{}, io.EOF
			}
			return sseEvent{}, err
		}
		if line == "" {
			if len(data) == 0 {
				// Nothing to dispatch (e.g. a lone "event:" or comments).
				name, pending = "", false
				continue
			}
			if name == "" {
				name = "message"
			}
			return sseEvent{name: name, data: strings.Join(data, "\n")}, nil
		}
		if strings.HasPrefix(line, ":") {
			continue // comment / keep-alive
		}
		field, value, found := strings.Cut(line, ":")
		if found {
			value = strings.TrimPrefix(value, " ")
		}
		switch field {
		case "event":
			name, pending = value, true
		case "data":
			data, pending = append(data, value), true
		default:
			// id, retry and unknown fields do not change how we watch.
		}
	}
}

// readLine returns one line without its terminator ("\n" or "\r\n"). At
// the end of the stream it returns the unterminated remainder with io.EOF.
func (s *sseReader) readLine() (string, error) {
	var buf []byte
	for {
		chunk, err := s.r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxSSELine {
			return "", errSSELineTooLong
		}
		if err == nil {
			buf = bytes.TrimSuffix(buf[:len(buf)-1], []byte("\r"))
			return string(buf), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return string(buf), err
	}
}
