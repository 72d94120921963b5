package rawio

import (
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Conn returns a reader and a writer for nc that use raw system calls
// when nc is a socket that offers them (TCP, Unix), and nc itself
// otherwise (TLS, in-memory pipes).
func Conn(nc net.Conn) (io.Reader, io.Writer) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nc, nc
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nc, nc
	}
	return &reader{rc: rc}, &writer{rc: rc}
}

type reader struct{ rc syscall.RawConn }

type writer struct{ rc syscall.RawConn }

// call makes the read or write system call trap on fd with p, again when
// a signal interrupts it. p is not empty.
func call(trap, fd uintptr, p []byte) (uintptr, syscall.Errno) {
	for {
		n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if errno != syscall.EINTR {
			return n, errno
		}
	}
}

// Read reads what the socket has; with nothing there, it waits for data
// (or the read deadline) through the poller.
func (r *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		n, errno = call(syscall.SYS_READ, fd, p)
		return errno != syscall.EAGAIN
	})
	switch {
	case err != nil:
		return 0, err // already says "raw-read" and the addresses
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	return int(n), nil
}

// Write writes all of p, waiting through the poller (and the write
// deadline) whenever the socket's buffer is full.
func (w *writer) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		var n uintptr
		var errno syscall.Errno
		err := w.rc.Write(func(fd uintptr) bool {
			n, errno = call(syscall.SYS_WRITE, fd, p[done:])
			return errno != syscall.EAGAIN
		})
		if err != nil {
			return done, err
		}
		if errno != 0 {
			return done, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", errno)}
		}
		done += int(n)
	}
	return done, nil
}
