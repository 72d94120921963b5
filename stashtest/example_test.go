package stashtest_test

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/stashcluster/stash/stashtest"
)

// A partition stalls a stream between two hosts; Heal lets its bytes
// through.
func ExampleNetwork_Partition() {
	nw := stashtest.NewNetwork()
	a, b := nw.Host("a"), nw.Host("b")
	ln, _ := b.Listen(b.Addr(7380))
	defer ln.Close()
	conn, _ := a.Dial(context.Background(), b.Addr(7380))
	defer conn.Close()
	peer, _ := ln.Accept()
	defer peer.Close()

	nw.Partition([]string{"a"}) // {a} | {b}
	conn.Write([]byte("hello"))
	peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := peer.Read(make([]byte, 5))
	fmt.Println("during the partition:", err != nil)

	nw.Heal()
	peer.SetReadDeadline(time.Time{})
	buf := make([]byte, 5)
	io.ReadFull(peer, buf)
	fmt.Println("after Heal:", string(buf))
	// Output:
	// during the partition: true
	// after Heal: hello
}
