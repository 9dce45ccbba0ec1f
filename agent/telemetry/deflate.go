package telemetry

import "encoding/binary"

// appendDeflate appends src compressed as a raw DEFLATE stream (RFC 1951),
// which compress/flate's reader decodes, to dst.
//
// compress/flate's writer costs about 1 MiB per writer at any level (its
// hash chains are arrays inside the compressor), allocated for every batch
// or kept for good: either way about a tenth of the agent's memory target.
// An outbox entry is a few KiB of JSON, so this encoder keeps its state on
// the stack: greedy LZ77 matching through a 4096-entry hash table of
// 4-byte prefixes, written as one final block with the fixed Huffman codes
// (RFC 1951 section 3.2.6). It compresses an entry to within about a fifth
// of flate.BestSpeed's size.
func appendDeflate(dst, src []byte) []byte {
	w := bitWriter{out: dst}
	w.write(1|1<<1, 3)               // BFINAL=1, BTYPE=01 (fixed Huffman codes)
	var table [1 << lzHashBits]int32 // position+1 of the last 4-byte prefix with each hash; 0: none
	lit := 0                         // src[lit:i] are not written yet
	for i := 0; i+lzMinMatch <= len(src); {
		h := lzHash(binary.LittleEndian.Uint32(src[i:]))
		cand := int(table[h]) - 1
		table[h] = int32(i + 1)
		if cand < 0 || i-cand > lzMaxDistance || binary.LittleEndian.Uint32(src[cand:]) != binary.LittleEndian.Uint32(src[i:]) {
			i++
			continue
		}
		n := lzMinMatch
		for n < lzMaxMatch && i+n < len(src) && src[cand+n] == src[i+n] {
			n++
		}
		for _, c := range src[lit:i] {
			w.literal(c)
		}
		w.match(n, i-cand)
		// Index the positions inside the match, so later repeats of them
		// are found too.
		for j := i + 1; j < i+n && j+lzMinMatch <= len(src); j++ {
			table[lzHash(binary.LittleEndian.Uint32(src[j:]))] = int32(j + 1)
		}
		i += n
		lit = i
	}
	for _, c := range src[lit:] {
		w.literal(c)
	}
	w.code(fixedLitLen[endOfBlock])
	return w.flush()
}

const (
	lzHashBits    = 12
	lzMinMatch    = 4 // the hashed prefix; DEFLATE allows 3
	lzMaxMatch    = 258
	lzMaxDistance = 32768
	endOfBlock    = 256
)

func lzHash(u uint32) uint32 { return (u * 2654435761) >> (32 - lzHashBits) }

// huffCode is a Huffman code ready to write: its bits reversed, because
// DEFLATE packs Huffman codes from their most significant bit into a stream
// filled from the least significant bit of each byte.
type huffCode struct {
	bits uint16
	n    uint8
}

// The fixed codes of RFC 1951 section 3.2.6, and the base values and extra
// bits of the length and distance symbols of section 3.2.5.
var (
	fixedLitLen   [288]huffCode
	fixedDist     [30]huffCode
	lengthBase    = [29]uint16{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lengthExtra   = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distanceBase  = [30]uint16{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distanceExtra = [30]uint8{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
)

func init() {
	for sym := range fixedLitLen {
		var code, n int
		switch {
		case sym < 144:
			code, n = 0x30+sym, 8
		case sym < 256:
			code, n = 0x190+sym-144, 9
		case sym < 280:
			code, n = sym-256, 7
		default:
			code, n = 0xc0+sym-280, 8
		}
		fixedLitLen[sym] = huffCode{reverseBits(code, n), uint8(n)}
	}
	for sym := range fixedDist {
		fixedDist[sym] = huffCode{reverseBits(sym, 5), 5}
	}
}

func reverseBits(code, n int) uint16 {
	var r uint16
	for range n {
		r = r<<1 | uint16(code&1)
		code >>= 1
	}
	return r
}

// bitWriter packs bits into bytes, least significant bit first.
type bitWriter struct {
	out  []byte
	acc  uint64
	nacc uint
}

func (w *bitWriter) write(v uint64, n uint) {
	w.acc |= v << w.nacc
	w.nacc += n
	for w.nacc >= 8 {
		w.out = append(w.out, byte(w.acc))
		w.acc >>= 8
		w.nacc -= 8
	}
}

func (w *bitWriter) code(c huffCode) { w.write(uint64(c.bits), uint(c.n)) }

func (w *bitWriter) literal(c byte) { w.code(fixedLitLen[c]) }

// match writes a length (3…258) and a distance (1…32768).
func (w *bitWriter) match(length, distance int) {
	s := symbolFor(lengthBase[:], length)
	w.code(fixedLitLen[257+s])
	w.write(uint64(length-int(lengthBase[s])), uint(lengthExtra[s]))
	s = symbolFor(distanceBase[:], distance)
	w.code(fixedDist[s])
	w.write(uint64(distance-int(distanceBase[s])), uint(distanceExtra[s]))
}

// symbolFor returns the index of the largest base not above v.
func symbolFor(base []uint16, v int) int {
	s := len(base) - 1
	for int(base[s]) > v {
		s--
	}
	return s
}

// flush writes the last partial byte and returns the output.
func (w *bitWriter) flush() []byte {
	if w.nacc > 0 {
		w.out = append(w.out, byte(w.acc))
		w.acc, w.nacc = 0, 0
	}
	return w.out
}
