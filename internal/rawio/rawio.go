// Package rawio reads and writes TCP sockets with raw system calls.
//
// Go's net package wraps every read and write in the scheduler's
// "blocking system call" protocol: while one runs, the runtime's monitor
// may hand the goroutine's processor to another thread, and it polls
// every 20 µs to find out. A write to a loopback or LAN socket is not
// blocking, but it is long (the kernel delivers the data within the
// call), so on a busy node with one processor most writes lose the
// processor to a new thread, and the monitor never slows its polling:
// a node that relays each request over a few sockets spends a good part
// of its CPU on thread switches. The sockets are non-blocking, so a raw
// call returns at once when it cannot go on; only then does the
// goroutine wait, through the net package's poller as usual, with the
// connection's deadlines.
package rawio
