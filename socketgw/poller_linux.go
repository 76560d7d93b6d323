package socketgw

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is a session's epoll set: the fds of its streams, plus an
// eventfd that wakes a blocked Wait (a stream queued for accept, the
// instance unloading). The capsule's own goroutine waits on it and reads
// the sockets itself, so a frame reaches the capsule with one wake-up, as
// it would reach a plain server, instead of passing through a reader
// goroutine.
//
// The epoll fd is itself registered with Go's netpoller (it is readable
// while events are pending), so a waiting capsule parks its goroutine, not
// an OS thread holding a P: a node with many capsules does not starve its
// other goroutines.
type poller struct {
	ep, ev int
	file   *os.File // owns ep
	rc     syscall.RawConn
	events [16]unix.EpollEvent

	// The state of one wait, kept here so that waiting allocates nothing.
	try      func(fd uintptr) bool // tryWait, bound once
	n        int
	err      error
	deadline bool // a read deadline is set on file
}

// wakeTag marks the eventfd in epoll events; stream handles are positive.
const wakeTag = -1

func newPoller() (*poller, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return nil, err
	}
	ev, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ep)
		return nil, err
	}
	p := &poller{ep: ep, ev: ev, file: os.NewFile(uintptr(ep), "epoll")}
	p.try = p.tryWait
	if p.rc, err = p.file.SyscallConn(); err != nil {
		p.close()
		return nil, err
	}
	if err := p.ctl(unix.EPOLL_CTL_ADD, ev, wakeTag); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *poller) ctl(op, fd int, tag int32) error {
	// Edge-triggered: a stream is read until EAGAIN or until its queue is
	// full, and read again when the capsule makes room.
	e := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: tag}
	return unix.EpollCtl(p.ep, op, fd, &e)
}

func (p *poller) add(fd int, handle int32) error { return p.ctl(unix.EPOLL_CTL_ADD, fd, handle) }

func (p *poller) remove(fd int) { unix.EpollCtl(p.ep, unix.EPOLL_CTL_DEL, fd, nil) }

// wake makes a blocked wait return.
func (p *poller) wake() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(p.ev, one[:])
}

// wait blocks up to ms milliseconds (< 0: no limit) and returns the tags
// of the ready fds, draining the eventfd if it fired.
func (p *poller) wait(ms int, tags []int32) ([]int32, error) {
	if ms >= 0 || p.deadline {
		var d time.Time
		if ms >= 0 {
			d = time.Now().Add(time.Duration(ms) * time.Millisecond)
		}
		if err := p.file.SetReadDeadline(d); err != nil {
			return tags, err
		}
		p.deadline = ms >= 0
	}
	err := p.rc.Read(p.try)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return tags, nil
	}
	if err == nil {
		err = p.err
	}
	if err != nil {
		return tags, err
	}
	n := p.n
	for _, e := range p.events[:n] {
		if e.Fd == wakeTag {
			var buf [8]byte
			unix.Read(p.ev, buf[:])
			continue
		}
		tags = append(tags, e.Fd)
	}
	return tags, nil
}

// tryWait collects ready events without blocking; false asks the
// netpoller to wait until the epoll fd is readable.
func (p *poller) tryWait(fd uintptr) bool {
	p.n, p.err = unix.EpollWait(int(fd), p.events[:], 0)
	if errors.Is(p.err, unix.EINTR) {
		p.n, p.err = 0, nil
	}
	return p.n > 0 || p.err != nil
}

func (p *poller) close() {
	unix.Close(p.ev)
	if p.file != nil {
		p.file.Close()
	} else {
		unix.Close(p.ep)
	}
}

// readFD reads what the socket holds without blocking. n == 0 with a nil
// error is the peer's end; errAgain means nothing more for now.
func readFD(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			return 0, errAgain
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}
