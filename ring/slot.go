package ring

import "strings"

// Slots is the number of hash slots, as in Redis Cluster.
const Slots = 16384

// crc16Table is the lookup table for CRC16/XMODEM (polynomial 0x1021,
// initial value 0, no reflection, no final XOR), the variant used by Redis
// Cluster's crc16.c. It is computed once and never written afterwards.
var crc16Table = makeCRC16Table()

func makeCRC16Table() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}

// crc16 computes CRC16/XMODEM of key without allocating.
func crc16[T string | []byte](key T) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return crc
}

// Slot returns the hash slot of key, exactly as Redis Cluster's
// CLUSTER KEYSLOT: CRC16/XMODEM mod 16384 of the hash tag if key has one,
// else of the whole key. The hash tag is the text between the first '{' and
// the first '}' after it, provided that text is non-empty.
func Slot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) & (Slots - 1)
}

// SlotBytes is [Slot] for a byte slice. It does not allocate.
func SlotBytes(key []byte) uint16 {
	for i, c := range key {
		if c != '{' {
			continue
		}
		for j := i + 1; j < len(key); j++ {
			if key[j] == '}' {
				if j > i+1 {
					key = key[i+1 : j]
				}
				break
			}
		}
		break
	}
	return crc16(key) & (Slots - 1)
}
