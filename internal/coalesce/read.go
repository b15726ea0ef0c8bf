package coalesce

// Reads. x/crypto reads the socket through a 4 KiB bufio.Reader: for a
// 32 KiB packet it fills that buffer once and then reads the rest straight
// into the packet, often in several pieces, about 2.5 read syscalls per
// packet. While data streams in, Conn reads the socket into a larger buffer
// and serves x/crypto's reads from it, so one syscall takes whatever the
// kernel holds (up to readBufSize, several packets). An idle connection
// holds no read buffer: it is taken from a pool when a read fills what it
// was asked for (more is likely waiting) and given back once a socket read
// comes back less than half full (the kernel had no more) and its bytes have
// been handed out.

// readBufSize is the read buffer of a streaming connection.
const readBufSize = 128 << 10

// bulkRead is the smallest direct read that, filled, counts as streaming:
// x/crypto's bufio.Reader asks for 4 KiB.
const bulkRead = 4 << 10

// freeReadBufs is the read buffers' free list, bounded like freeBufs (and
// for the same reason not a sync.Pool).
var freeReadBufs = make(chan *[]byte, freeBufCount)

func getReadBuf() *[]byte {
	select {
	case b := <-freeReadBufs:
		return b
	default:
		b := make([]byte, readBufSize)
		return &b
	}
}

// readState is the read side of a Conn. Only the reading goroutine touches
// it: x/crypto reads a connection from one goroutine.
type readState struct {
	buf  *[]byte
	r, w int   // (*buf)[r:w] is read and not yet handed out
	drop bool  // give buf back once it is empty
	err  error // an error that came with the last bytes, for the next call
}

// Read reads from the connection, through the read buffer while data
// streams in. It must not be called by several goroutines at once.
func (c *Conn) Read(p []byte) (int, error) {
	rs := &c.rd
	if rs.r < rs.w {
		n := copy(p, (*rs.buf)[rs.r:rs.w])
		rs.r += n
		if rs.r == rs.w {
			rs.r, rs.w = 0, 0
			if rs.drop {
				rs.release()
			}
		}
		return n, nil
	}
	if err := rs.err; err != nil {
		rs.err = nil
		return 0, err
	}
	if rs.buf == nil || len(p) >= readBufSize {
		n, err := c.Conn.Read(p)
		if rs.buf == nil && err == nil && n == len(p) && n >= bulkRead {
			rs.buf, rs.drop = getReadBuf(), false
		}
		return n, err
	}
	n, err := c.Conn.Read(*rs.buf)
	if n == 0 {
		rs.release()
		return 0, err
	}
	rs.w, rs.err = n, err
	rs.drop = err != nil || n < readBufSize/2
	k := copy(p, (*rs.buf)[:n])
	rs.r = k
	if rs.r == rs.w {
		rs.r, rs.w = 0, 0
		if rs.drop {
			rs.release()
		}
	}
	return k, nil
}

func (rs *readState) release() {
	if rs.buf != nil {
		select {
		case freeReadBufs <- rs.buf:
		default:
		}
		rs.buf = nil
	}
}
