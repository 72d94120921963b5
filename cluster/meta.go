package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// meta is what a node gossips about itself (memberlist node meta).
//
// Encoding, version 1 (strings are uvarint length + bytes):
//
//	version byte (1)
//	state byte
//	flags byte (bit 0: clustered, bit 1: leaving)
//	bootstrap-expect byte
//	name, zone, cluster address, RESP address, admin address, cluster ID
//
// Lengths must be minimal varints. A decoder of version 1 ignores bytes after the last field, so a later
// version may append fields; a higher version number means an
// incompatible layout and is rejected.
type meta struct {
	State       State
	Clustered   bool // the node has raft state: it is in a cluster or being added to one
	Leaving     bool // the node is leaving for good (Node.Leave): drop it now, no DownGrace
	Expect      uint8
	Name        string
	Zone        string
	ClusterAddr string
	RESPAddr    string
	AdminAddr   string
	ClusterID   string // "" until the node has applied its cluster's first command
}

const (
	metaVersion   = 1
	flagClustered = 1 << 0
	flagLeaving   = 1 << 1
	metaMaxSize   = 512 // memberlist.MetaMaxSize
)

var errBadMeta = errors.New("cluster: bad node meta")

func (m *meta) encode() []byte {
	b := make([]byte, 0, 128)
	var flags byte
	if m.Clustered {
		flags |= flagClustered
	}
	if m.Leaving {
		flags |= flagLeaving
	}
	b = append(b, metaVersion, byte(m.State), flags, m.Expect)
	for _, s := range []string{m.Name, m.Zone, m.ClusterAddr, m.RESPAddr, m.AdminAddr, m.ClusterID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeMeta(b []byte) (meta, error) {
	var m meta
	if len(b) < 4 {
		return m, fmt.Errorf("%w: %d bytes", errBadMeta, len(b))
	}
	if b[0] != metaVersion {
		return m, fmt.Errorf("%w: version %d", errBadMeta, b[0])
	}
	m.State = State(b[1])
	if !m.State.valid() {
		return m, fmt.Errorf("%w: state %d", errBadMeta, b[1])
	}
	m.Clustered = b[2]&flagClustered != 0
	m.Leaving = b[2]&flagLeaving != 0
	m.Expect = b[3]
	b = b[4:]
	for i, p := range []*string{&m.Name, &m.Zone, &m.ClusterAddr, &m.RESPAddr, &m.AdminAddr, &m.ClusterID} {
		l, k := binary.Uvarint(b)
		if k <= 0 || k != len(binary.AppendUvarint(nil, l)) || l > uint64(len(b)-k) {
			return meta{}, fmt.Errorf("%w: field %d truncated", errBadMeta, i)
		}
		*p = string(b[k : k+int(l)])
		b = b[k+int(l):]
	}
	if checkName(m.Name) != nil {
		return meta{}, fmt.Errorf("%w: name %q", errBadMeta, m.Name)
	}
	if m.ClusterAddr == "" {
		return meta{}, fmt.Errorf("%w: no cluster address", errBadMeta)
	}
	return m, nil
}
