package quickack

import "golang.org/x/sys/unix"

const supported = true

func setQuickAck(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
}
