package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stashcluster/stash/ring"
	"github.com/stashcluster/stash/storage"
)

// Cluster is what replication needs from the control plane. package stash
// adapts *cluster.Node to it; tests may fake it.
type Cluster interface {
	// Table returns the committed slot table, or nil before the first.
	Table() *ring.Table
	// Changes returns a channel closed at the next table change.
	Changes() <-chan struct{}
	// InContact reports whether this node may act as a primary now.
	InContact() bool
	// Lapses counts the times contact was lost and regained, including
	// lapses that ended before anyone asked InContact.
	Lapses() uint64
	// LeaseTimeout is how long an old primary may go on acknowledging
	// after it lost contact.
	LeaseTimeout() time.Duration
	// DataListener accepts authenticated data streams from peers.
	DataListener() net.Listener
	// DialData opens an authenticated data stream to a peer.
	DialData(ctx context.Context, id ring.NodeID) (net.Conn, error)
}

// ExecFunc runs one forwarded command and returns its RESP reply.
type ExecFunc func(ctx context.Context, proto int, args [][]byte) []byte

// Error is a replication error with the RESP error code a client sees
// (server.CodedError).
type Error struct {
	Code string // NOQUORUM, TRYAGAIN
	Msg  string
}

func (e *Error) Error() string { return e.Code + " " + e.Msg }

// RESPError is the error reply a Redis client receives.
func (e *Error) RESPError() string { return e.Error() }

// Errors.
var (
	// ErrNoQuorum: a change reached fewer than W copies in time. It is
	// on this node and maybe others: it may or may not survive.
	ErrNoQuorum = &Error{"NOQUORUM", "write reached fewer replicas than the write quorum; it may or may not have been applied"}
	// ErrNotServing: this node does not serve the slot now; nothing was
	// done. Retry (the table is changing or a takeover is under way).
	ErrNotServing = &Error{"TRYAGAIN", "slot not served by this node right now; nothing was done, retry"}
	// ErrClosed: the replicator is closed.
	ErrClosed = &Error{"TRYAGAIN", "node is shutting down; retry on another node"}
)

// Config configures a Replicator.
type Config struct {
	Self    ring.NodeID
	Cluster Cluster
	Store   *storage.Store
	// WriteQuorum is W, the copies (primary included) a write needs
	// before it is acknowledged; 0 means a majority of the slot's
	// replicas. It is capped at the slot's replica count.
	WriteQuorum int
	// Async acknowledges writes once the primary applied them and copies
	// them to the backups afterwards. Faster, and an acknowledged write
	// is lost if the primary fails before the copies land. Unsafe; for
	// latency experiments and for proving the test harness can fail.
	Async bool
	// Timeout bounds waiting for backups' acknowledgements. Default 2 s.
	Timeout time.Duration
	// ApplyWaits says the store's writes wait for the disk (fsync
	// always): copies from a primary are then applied concurrently
	// rather than in arrival order on the stream's reader.
	ApplyWaits bool
	// CatchUpInterval is how often backup slots that are not in sync are
	// compared with their primaries. Default 500 ms.
	CatchUpInterval time.Duration
	// Dir, if set, holds the marker that a node which started without
	// its data has not resynced yet (see catchup.go), so that a restart
	// in between does not make it count as a full replica.
	Dir string
	// AntiEntropy is how often every backup slot is compared with its
	// primary and repaired. Default 1 min; negative turns it off.
	AntiEntropy time.Duration
	// DropAfter is how long this node keeps its copy of a slot it is no
	// longer a replica of (the slot moved away, or the node came back
	// after its places were given to others) before it deletes it. By
	// then no takeover consults the copy, and keeping it would only hold
	// memory and, should the slot come back, keys deleted meanwhile.
	// Default 5 min; negative keeps copies until their stashes expire.
	DropAfter time.Duration
	Logger    *slog.Logger
}

// Replicator runs this node's side of the data plane.
type Replicator struct {
	cfg   Config
	store *storage.Store
	cl    Cluster
	log   *slog.Logger

	table atomic.Pointer[ring.Table]
	// prevTable: the table applied before table, with no gap between
	// them (nil after a gap or a restart). A slot this node gained in
	// table is read at its primary in prevTable until taken over.
	prevTable atomic.Pointer[ring.Table]
	// handedOver[slot]: the epoch of the table that moved slot away while
	// this node served it; 0 once anything may have changed the slot
	// since (a copy from the new primary, a gap, lost contact). While set
	// to the current epoch, this node's copy holds every write that was
	// acknowledged for the slot, and the new primary acknowledges none
	// before its takeover is done: it may serve fallback reads.
	handedOver [ring.Slots]atomic.Uint64
	gen        uint64                  // bumped by every apply; owned by the follow goroutine
	ready      [ring.Slots]atomic.Bool // serving as primary: reconciled and lease waited

	// synced: this node's copy of the slot holds every acknowledged
	// write (see catchup.go). syncMu orders flag changes with table
	// changes.
	syncMu sync.Mutex
	synced [ring.Slots]atomic.Bool
	// lost: the node started without its data and has not resynced
	// every slot since.
	lost atomic.Bool

	// cutOff: contact with the cluster was lost since the slots became
	// ready; nothing is served until the follow loop took them over again.
	cutOff atomic.Bool
	// lapsesSeen: Cluster.Lapses when the slots were last taken over
	// after a cut-off; a newer count is a lapse nobody saw, and cuts off.
	lapsesSeen atomic.Uint64

	// missedBy: slots whose copies may not have reached a backup (see
	// missed); the catch-up loop tells each backup.
	missedMu sync.Mutex
	missedBy map[ring.NodeID]map[uint16]struct{}
	// copying counts copies still waiting for a stream to their backup
	// (see replicate); each ends within Timeout.
	copying atomic.Int64

	peersMu sync.Mutex
	peers   map[ring.NodeID]*peer

	pend  pending
	async asyncQueue
	dl    deadlines

	exec    ExecFunc
	nextID  atomic.Uint64
	workers *workers

	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool

	connsMu sync.Mutex
	conns   map[net.Conn]struct{}

	// Counters for metrics and tests.
	Forwarded, Replicated, NoQuorum, Reconciled, Refused atomic.Int64
	// FallbackReads counts reads this node ran for a slot it had handed
	// over, for its new primary still taking it over.
	FallbackReads atomic.Int64
	// Repaired counts entries a backup fetched from its primary because
	// its copy lacked them (catch-up, re-replication, anti-entropy).
	Repaired atomic.Int64
	// Pruned counts entries a backup removed because its primary no
	// longer had them (deleted while it was away, tombstone since gone).
	Pruned atomic.Int64
	// DroppedSlots counts copies of slots deleted DropAfter after this
	// node stopped being one of their replicas.
	DroppedSlots atomic.Int64
	// unheld[slot]: since when this node holds data of slot without
	// being its replica (zero: it is one, or holds nothing). Owned by
	// the catch-up goroutine.
	unheld [ring.Slots]time.Time
	// Carried counts changes whose copy for the forwarding node went in
	// the forward's reply (see carry.go); Uncarried those of them the
	// forwarding node did not confirm, re-sent by retry.
	Carried, Uncarried atomic.Int64
	// Recovered counts stashes this primary lacked and adopted from the
	// node their tag names (see KV.Recover).
	Recovered atomic.Int64
	// tableAt: when the current table was applied (Unix ns).
	tableAt atomic.Int64
	// recoverAsk bounds each question Recover asks a hinted node.
	recoverAsk time.Duration
	// ServedBytes counts key and value bytes this node streamed to peers
	// fetching slots from it.
	ServedBytes atomic.Int64
}

// New returns a Replicator; Start makes it serve.
func New(cfg Config) (*Replicator, error) {
	if cfg.Self == "" || cfg.Cluster == nil || cfg.Store == nil {
		return nil, errors.New("replication: Self, Cluster and Store are required")
	}
	if cfg.WriteQuorum < 0 {
		return nil, fmt.Errorf("replication: write quorum %d < 0", cfg.WriteQuorum)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CatchUpInterval <= 0 {
		cfg.CatchUpInterval = 500 * time.Millisecond
	}
	if cfg.AntiEntropy == 0 {
		cfg.AntiEntropy = time.Minute
	}
	if cfg.DropAfter == 0 {
		cfg.DropAfter = 5 * time.Minute
	}
	r := &Replicator{
		cfg:   cfg,
		store: cfg.Store,
		cl:    cfg.Cluster,
		log:   cfg.Logger,
		peers: make(map[ring.NodeID]*peer),
		stop:  make(chan struct{}),
		conns: make(map[net.Conn]struct{}),

		recoverAsk: defaultRecoverAsk,
	}
	if err := r.initLost(); err != nil {
		return nil, err
	}
	r.workers = newWorkers(r.stop)
	r.pend.init()
	r.dl = deadlines{tick: 50 * time.Millisecond, stop: r.stop}
	return r, nil
}

// Start serves peers' data streams with exec for forwarded commands and
// starts following the slot table.
func (r *Replicator) Start(exec ExecFunc) {
	r.exec = exec
	if r.cfg.Async || r.cfg.WriteQuorum == 1 {
		r.wg.Add(1)
		go r.flushAsync()
	}
	r.wg.Add(3)
	go r.accept(r.cl.DataListener())
	go r.follow()
	go r.catchUp()
}

// Close stops serving and closes every stream. Writes waiting for
// backups fail with ErrClosed.
func (r *Replicator) Close() error {
	if r.closed.Swap(true) {
		return nil
	}
	close(r.stop)
	r.cl.DataListener().Close() // ends accept; the cluster port itself stays with the cluster node
	r.connsMu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.connsMu.Unlock()
	r.peersMu.Lock()
	for _, p := range r.peers {
		p.close()
	}
	r.peersMu.Unlock()
	r.wg.Wait()
	return nil
}

// quorum returns W for a slot with n replicas.
func (r *Replicator) quorum(n int) int {
	w := r.cfg.WriteQuorum
	if w == 0 {
		w = n/2 + 1
	}
	return min(max(w, 1), n)
}

// Serving reports whether this node serves slot as primary now: the
// table it acts on makes it primary, the slot's takeover is done, it is
// in contact with the cluster, and the control plane holds no newer
// table it has not applied yet (a newer one may have moved the slot
// while this node was busy; its new primary may already be serving).
func (r *Replicator) Serving(slot uint16) bool {
	t := r.table.Load()
	if t == nil || t.Primary(slot) != r.cfg.Self || !r.ready[slot].Load() || r.cutOff.Load() {
		return false
	}
	if !r.inContact() {
		// Once out of contact, never again on the readiness earned
		// before: back in contact, the first heartbeat can arrive before
		// the tables committed meanwhile, and the slot may have moved.
		// The follow loop takes the slots over anew.
		r.cutOff.Store(true)
		return false
	}
	ct := r.cl.Table()
	return ct == nil || ct.Epoch() == t.Epoch()
}

// Holds reports whether this node holds a copy of slot in the current
// table (primary or backup).
func (r *Replicator) Holds(slot uint16) bool {
	t := r.table.Load()
	if t == nil {
		return false
	}
	for _, id := range t.Replicas(slot) {
		if id == r.cfg.Self {
			return true
		}
	}
	return false
}

// Table returns the table the data plane acts on (the latest it has
// seen), or nil.
func (r *Replicator) Table() *ring.Table { return r.table.Load() }

// SlotReady reports whether slot finished its takeover here (used for
// status pages).
func (r *Replicator) SlotReady(slot uint16) bool { return r.ready[slot].Load() }

func (r *Replicator) peer(id ring.NodeID) *peer {
	r.peersMu.Lock()
	defer r.peersMu.Unlock()
	p := r.peers[id]
	if p == nil {
		// After Close a peer is born closed: nothing dials any more.
		p = &peer{r: r, id: id, closed: r.closed.Load()}
		r.peers[id] = p
	}
	return p
}

func (r *Replicator) id() uint64 { return r.nextID.Add(1) }

// Ready reports whether this node is a full member of the data plane: it
// has a slot table, is in contact with the cluster, serves every slot
// the table makes it primary for, and its copy of every slot it backs up
// is in sync. The reason says what is missing.
func (r *Replicator) Ready() (bool, string) {
	t := r.table.Load()
	if t == nil {
		return false, "no slot table yet (cluster forming or joining)"
	}
	if !r.inContact() {
		return false, "lost contact with the cluster"
	}
	waiting := 0
	for s := range ring.Slots {
		if t.Primary(uint16(s)) == r.cfg.Self && !r.ready[s].Load() {
			waiting++
		}
	}
	if waiting > 0 {
		return false, fmt.Sprintf("taking over %d slots", waiting)
	}
	if n := r.Unsynced(); n > 0 {
		return false, fmt.Sprintf("catching up %d backup slots", n)
	}
	return true, ""
}

// inContact is Cluster.InContact, and false too after a lapse of contact
// this node has not taken its slots over again since.
func (r *Replicator) inContact() bool {
	return r.cl.InContact() && r.cl.Lapses() == r.lapsesSeen.Load()
}
