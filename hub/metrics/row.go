package metrics

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sid identifies a series of a device: the first 8 bytes of SHA-256 over
// the series' canonical form (see seriesID). Keys spell it as 16 hex
// digits; rows hold the 8 bytes.
type sid [8]byte

func (s sid) String() string { return hex.EncodeToString(s[:]) }

func parseSID(s string) (sid, error) {
	var id sid
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("series id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("series id %q: %w", s, err)
	}
	return id, nil
}

// seriesID is the sid of a series: SHA-256 over the name, then each label
// as NUL name NUL value, in label name order.
func seriesID(name string, labels map[string]string) sid {
	h := sha256.New()
	h.Write([]byte(name))
	add := func(k string) {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(labels[k]))
	}
	if len(labels) == 1 {
		for k := range labels {
			add(k)
		}
	} else if len(labels) > 1 {
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			add(k)
		}
	}
	var id sid
	copy(id[:], h.Sum(nil))
	return id
}

// A row holds the samples of one batch: every point's sid and value, at
// the batch's time. Its encoding is a version byte (rowVersion), then
// rowPointSize bytes per point: the 8 sid bytes and the value as a
// big-endian IEEE 754 float64, ordered by sid, each sid once (the batch's
// last point of a series wins, as a later sample of the same series and
// time would).
const (
	rowVersion   = 1
	rowPointSize = 16
)

// rowPoint is one sample of a row.
type rowPoint struct {
	sid sid
	v   float64
}

// encodeRow encodes pts as a row, sorting them by sid (in place).
func encodeRow(pts []rowPoint) []byte {
	slices.SortStableFunc(pts, func(a, b rowPoint) int { return bytes.Compare(a.sid[:], b.sid[:]) })
	out := make([]byte, 1, 1+rowPointSize*len(pts))
	out[0] = rowVersion
	for i, p := range pts {
		if i+1 < len(pts) && pts[i+1].sid == p.sid {
			continue // a later point of the same series wins
		}
		out = append(out, p.sid[:]...)
		out = binary.BigEndian.AppendUint64(out, math.Float64bits(p.v))
	}
	return out
}

// row is an encoded row, checked by decodeRow.
type row []byte

// decodeRow checks the encoding of a row stored at key.
func decodeRow(key string, v []byte) (row, error) {
	if len(v) < 1 || v[0] != rowVersion || (len(v)-1)%rowPointSize != 0 {
		return nil, fmt.Errorf("metrics: corrupt row %q (%d bytes)", key, len(v))
	}
	return row(v[1:]), nil
}

func (r row) len() int { return len(r) / rowPointSize }

func (r row) at(i int) rowPoint {
	b := r[i*rowPointSize:]
	var p rowPoint
	copy(p.sid[:], b)
	p.v = math.Float64frombits(binary.BigEndian.Uint64(b[8:]))
	return p
}

// find returns the value of series id in r.
func (r row) find(id sid) (float64, bool) {
	lo, hi := 0, r.len()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(r[m*rowPointSize:m*rowPointSize+8], id[:]); {
		case c == 0:
			return r.at(m).v, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return 0, false
}

// rowKey is the key of a batch's row: <device>/<unix ms>/<epoch>/<seq>,
// so a device's rows are in time order, and two batches with the same
// time stay apart.
func rowKey(dev string, t time.Time, epoch string, seq uint64) string {
	return dev + "/" + msKey(t) + "/" + epoch + "/" + hex16(seq)
}

// rowTime parses the time of a row key.
func rowTime(key string) (time.Time, error) {
	_, rest, _ := strings.Cut(key, "/")
	ts, _, _ := strings.Cut(rest, "/")
	ms, err := strconv.ParseUint(ts, 16, 64)
	if err != nil || len(ts) != 16 {
		return time.Time{}, fmt.Errorf("metrics: corrupt row key %q", key)
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}
