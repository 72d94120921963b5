package ring

import "testing"

func BenchmarkSlot(b *testing.B) {
	keys := []string{"foo", "{user1000}.following", "stash:AAAAAAAAAAAAAAAAAAAAAA", "a-much-longer-key-used-by-some-application:12345678"}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		Slot(keys[i%len(keys)])
	}
}

func BenchmarkSlotBytes(b *testing.B) {
	key := []byte("stash:AAAAAAAAAAAAAAAAAAAAAA")
	b.ReportAllocs()
	for b.Loop() {
		SlotBytes(key)
	}
}

func benchBuild(b *testing.B, n, replicas, zones int) {
	ms := roster(n, zones)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(ms, replicas, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildFresh8(b *testing.B)        { benchBuild(b, 8, 3, 0) }
func BenchmarkBuildFresh64(b *testing.B)       { benchBuild(b, 64, 3, 0) }
func BenchmarkBuildFresh64Zones3(b *testing.B) { benchBuild(b, 64, 3, 3) }
func BenchmarkBuildFresh256(b *testing.B)      { benchBuild(b, 256, 3, 0) }

// BenchmarkBuildJoin measures the leader's common case: one node joins a
// 64-node cluster and the table is rebuilt from the previous one.
func BenchmarkBuildJoin64(b *testing.B) {
	prev, err := Build(roster(64, 0), 3, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	ms := roster(65, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(ms, 3, 2, prev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBuildLeave64 measures one node leaving a 64-node cluster.
func BenchmarkBuildLeave64(b *testing.B) {
	prev, err := Build(roster(64, 0), 3, 1, nil)
	if err != nil {
		b.Fatal(err)
	}
	ms := roster(64, 0)[1:]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(ms, 3, 2, prev); err != nil {
			b.Fatal(err)
		}
	}
}
