package muxproto

import (
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// frame is a yamux header (version 0) and body.
func frame(typ byte, flags uint16, id uint32, body []byte, length uint32) []byte {
	h := make([]byte, 12)
	h[1] = typ
	binary.BigEndian.PutUint16(h[2:], flags)
	binary.BigEndian.PutUint32(h[4:], id)
	binary.BigEndian.PutUint32(h[8:], length)
	return append(h, body...)
}

// FuzzClient: whatever the pod's end writes (the container's user may put
// anything on the stream), the gate's end neither panics nor hangs: with
// the input at its end, the session and its stream end. Seeds: the
// preamble and frames of each type (testdata/fuzz/FuzzClient).
func FuzzClient(f *testing.F) {
	p := []byte(Preamble)
	f.Add([]byte("SSH-2.0-sshgate-agent\r\n"))
	f.Add(p)
	f.Add(append(append([]byte{}, p...), frame(1, 2, 1, nil, 0)...))                        // ACK of stream 1
	f.Add(append(append([]byte{}, p...), frame(0, 2, 1, []byte("hello"), 5)...))            // data
	f.Add(append(append([]byte{}, p...), frame(0, 0, 1, []byte("x"), 1<<30)...))            // over the window
	f.Add(append(append([]byte{}, p...), frame(1, 1, 2, nil, 0)...))                        // the agent opens a stream
	f.Add(append(append([]byte{}, p...), frame(2, 1, 0, nil, 42)...))                       // ping
	f.Add(append(append([]byte{}, p...), frame(3, 0, 0, nil, 0)...))                        // go away
	f.Add(append(append([]byte{}, p...), append(frame(1, 8, 1, nil, 0), 9, 9, 9, 9, 9)...)) // RST, then junk
	f.Fuzz(func(t *testing.T, data []byte) {
		gate, pod := net.Pipe()
		go io.Copy(io.Discard, pod) // what the gate sends
		go func() {
			pod.Write(data)
			pod.Close()
		}()
		gate.SetDeadline(time.Now().Add(5 * time.Second))
		sess, err := Client(gate)
		if err != nil {
			gate.Close()
			return
		}
		defer sess.Close()
		if st, err := sess.OpenStream(); err == nil {
			st.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, st)
			st.Close()
		}
		go func() {
			if st, err := sess.AcceptStream(); err == nil {
				st.Close()
			}
		}()
		select {
		case <-sess.CloseChan():
		case <-time.After(5 * time.Second):
			t.Fatal("the session did not end with its input")
		}
	})
}
