package client

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
)

// sseMessage is one message of a Server-Sent Events stream: the lines up
// to a blank line. A message may carry only an id, a retry or comments.
type sseMessage struct {
	event   string
	data    []byte // the data lines joined by "\n"; owned by the message
	hasData bool
	id      string
	hasID   bool
	retry   int // milliseconds; -1 when the message set none
	comment bool
}

// errMessageTooLarge means a message's lines exceed the reader's bound.
var errMessageTooLarge = errors.New("message too large")

// sseReader reads the messages of a text/event-stream body, as the HTML
// standard parses them, with one difference: lines end with "\n" or
// "\r\n" (a lone "\r" is part of its line). A message's lines together may
// hold at most max bytes: a larger one is errMessageTooLarge, so that a
// hostile server cannot make the reader buffer without end. A line is
// read into a buffer that grows as the line does (never bufio.Scanner's
// fixed 64 KiB), and the data of a one-line message is that buffer, not a
// copy.
type sseReader struct {
	r    *bufio.Reader
	max  int
	line []byte
}

func newSSEReader(r io.Reader, max int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// buffered reports whether bytes of the stream are read and waiting: more
// messages will follow at once.
func (s *sseReader) buffered() bool { return s.r.Buffered() > 0 }

// readLine returns the next line without its ending; room is how many
// bytes it may hold. A stream that ends inside a line ends without it.
func (s *sseReader) readLine(room int) ([]byte, error) {
	s.line = s.line[:0]
	for {
		frag, err := s.r.ReadSlice('\n')
		if len(s.line)+len(frag) > room+2 { // +2: the line's ending
			return nil, errMessageTooLarge
		}
		s.line = append(s.line, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(s.line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		break
	}
	l := s.line[:len(s.line)-1]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		l = l[:n-1]
	}
	if len(l) > room {
		return nil, errMessageTooLarge
	}
	return l, nil
}

// next returns the next message. It returns io.EOF when the stream ends
// between messages, io.ErrUnexpectedEOF when it ends inside one (the
// partial message is dropped, as the standard says).
func (s *sseReader) next() (sseMessage, error) {
	m := sseMessage{retry: -1}
	size := 0 // bytes of the message's lines so far
	started := false
	for {
		line, err := s.readLine(s.max - size)
		if err != nil {
			if err == io.EOF && started {
				err = io.ErrUnexpectedEOF
			}
			return sseMessage{}, err
		}
		size += len(line)
		if len(line) == 0 {
			if started {
				if m.hasData {
					// The standard drops the data's last "\n": the
					// lines are joined by "\n" (appended per line below).
					m.data = m.data[:len(m.data)-1]
				}
				return m, nil
			}
			continue // blank lines between messages
		}
		started = true
		if line[0] == ':' {
			m.comment = true
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "event":
			m.event = string(value)
		case "data":
			if !m.hasData {
				// The first data line: keep the line's own buffer rather
				// than copy what may be megabytes, and let the reader
				// grow a new one (so that it does not keep a snapshot's
				// buffer for the stream's life either).
				m.data = append(value, '\n')
				s.line = nil
			} else {
				m.data = append(append(m.data, value...), '\n')
			}
			m.hasData = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				m.id, m.hasID = string(value), true
			}
		case "retry":
			if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 && isDigits(value) {
				m.retry = n
			}
		}
		// Any other field is ignored, as the standard says.
	}
}

func isDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}
