package stash_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/stashcluster/stash"
)

// An embedded node: store session state, keep the tag, get it back.
func Example() {
	ctx := context.Background()
	cfg := stash.DefaultConfig()
	cfg.Memory = true  // a real program sets DataDir instead
	cfg.Port = -1      // Go API only: no Redis port
	cfg.AdminPort = -1 // and no admin port
	cfg.Secret = []byte("an example secret of 32 bytes...")
	node, err := stash.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Shutdown(ctx)

	tag, err := node.Put(ctx, []byte(`{"step":2}`), 30*time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	// ... the browser keeps tag; the connection drops; it comes back:
	state, err := node.Get(ctx, tag)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(state))

	if err := node.Set(ctx, tag, []byte(`{"step":3}`), 0); err != nil {
		log.Fatal(err)
	}
	state, _ = node.Get(ctx, tag)
	fmt.Println(string(state))

	_ = node.Delete(ctx, tag)
	_, err = node.Get(ctx, tag)
	fmt.Println(errors.Is(err, stash.ErrNotFound))
	// Output:
	// {"step":2}
	// {"step":3}
	// true
}

// A tag that was tampered with is rejected, not looked up.
func ExampleNode_Get_forgedTag() {
	ctx := context.Background()
	cfg := stash.DefaultConfig()
	cfg.Memory, cfg.Port, cfg.AdminPort = true, -1, -1
	node, err := stash.Open(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	tag, _ := node.Put(ctx, []byte("state"), time.Minute)
	forged := []byte(tag)
	forged[5] ^= 0x01 // flip a bit in the stash ID part
	_, err = node.Get(ctx, string(forged))
	fmt.Println(errors.Is(err, stash.ErrBadTag))
	// Output: true
}
