package ring_test

import (
	"fmt"

	"github.com/stashcluster/stash/ring"
)

func ExampleSlot() {
	fmt.Println(ring.Slot("foo"))
	fmt.Println(ring.Slot("{user1000}.following") == ring.Slot("{user1000}.followers"))
	// Output:
	// 12182
	// true
}

func ExampleBuild() {
	members := []ring.Member{
		{ID: "a", Zone: "east"}, {ID: "b", Zone: "west"}, {ID: "c", Zone: "north"},
	}
	t1, err := ring.Build(members, 2, 1, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(t1.PrimaryCounts())

	// A fourth node joins: rebuild from the table in force.
	members = append(members, ring.Member{ID: "d", Zone: "east"})
	t2, err := ring.Build(members, 2, t1.Epoch()+1, t1)
	if err != nil {
		panic(err)
	}
	fmt.Println(t2.PrimaryCounts())
	fmt.Println(t2.Moved(t1) < ring.Slots*2/4+100)
	// Output:
	// map[a:5461 b:5461 c:5462]
	// map[a:4096 b:4096 c:4096 d:4096]
	// true
}
