package tag_test

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/stashcluster/stash/tag"
)

func Example() {
	codec, err := tag.NewCodec([]byte("a cluster secret of 16+ bytes"))
	if err != nil {
		panic(err)
	}
	id, err := tag.NewID(rand.Reader)
	if err != nil {
		panic(err)
	}
	s := codec.Encode(tag.Tag{ID: id, Hint: tag.HintFor("node-1")})
	fmt.Println(len(s))

	t, err := codec.Decode(s)
	fmt.Println(err, t.ID == id, t.Hint == tag.HintFor("node-1"))

	altered := []byte(s)
	altered[10] ^= 1
	_, err = codec.Decode(string(altered))
	fmt.Println(errors.Is(err, tag.ErrBadTag))
	// Output:
	// 50
	// <nil> true true
	// true
}
