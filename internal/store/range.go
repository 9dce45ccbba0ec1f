package store

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Time-series helpers: entries that expire by themselves and ordered range
// scans, forward and backward. Keys are ordered bytewise, so
// callers that want time order encode times with fixed width (see
// hub/metrics).

// PutTTL is Put for an entry that expires ttl after the commit: it is no
// longer visible then, and compaction reclaims its space. Retention of
// time series costs no deletes.
func (tx *Tx) PutTTL(k Keyspace, key string, val []byte, ttl time.Duration) error {
	if err := tx.checkKeyspace(k); err != nil {
		return fmt.Errorf("store: put %s: %w", keyName(k.prefix, key), err)
	}
	if ttl <= 0 {
		return fmt.Errorf("store: put %s: ttl %s: must be positive", keyName(k.prefix, key), ttl)
	}
	bk, err := fullKey(k.prefix, key)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", keyName(k.prefix, key), err)
	}
	if err := txnErr(tx.txn.SetEntry(badger.NewEntry(bk, bytes.Clone(val)).WithTTL(ttl))); err != nil {
		return fmt.Errorf("store: put %s: %w", keyName(k.prefix, key), err)
	}
	return nil
}

// ScanRange calls fn for every key of k in [start, end), in order. An
// empty end means no upper bound. fn's error stops the scan and is
// returned as is.
func (tx *Tx) ScanRange(k Keyspace, start, end string, fn func(key string, val []byte) error) error {
	return tx.scanRange(k, start, end, false, fn)
}

// ScanRangeReverse is ScanRange in descending key order: it calls fn for
// every key of k in [start, end), greatest first. end must not be empty.
func (tx *Tx) ScanRangeReverse(k Keyspace, start, end string, fn func(key string, val []byte) error) error {
	if end == "" {
		return fmt.Errorf("store: scan %s: %w: a reverse scan needs an end", keyName(k.prefix, start), ErrInvalidKey)
	}
	return tx.scanRange(k, start, end, true, fn)
}

func (tx *Tx) scanRange(k Keyspace, start, end string, reverse bool, fn func(key string, val []byte) error) error {
	if err := tx.checkKeyspace(k); err != nil {
		return fmt.Errorf("store: scan %s: %w", keyName(k.prefix, start), err)
	}
	if strings.IndexByte(start, 0) >= 0 || strings.IndexByte(end, 0) >= 0 {
		return fmt.Errorf("store: scan %s: %w: bound contains a NUL byte", keyName(k.prefix, start), ErrInvalidKey)
	}
	p := []byte(k.prefix)
	it := tx.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 256, Prefix: p, Reverse: reverse})
	defer it.Close()
	startKey, endKey := []byte(k.prefix+start), []byte(k.prefix+end)
	// Forward, the scan seeks start and stops at end. In reverse, Seek
	// finds the greatest key ≤ its argument: the scan seeks end, skips end
	// itself if it exists, and stops below start.
	seek, inRange := startKey, func(key []byte) bool { return end == "" || bytes.Compare(key, endKey) < 0 }
	if reverse {
		seek, inRange = endKey, func(key []byte) bool { return bytes.Compare(key, startKey) >= 0 }
	}
	for it.Seek(seek); it.ValidForPrefix(p); it.Next() {
		item := it.Item()
		if reverse && bytes.Equal(item.Key(), endKey) {
			continue // end is excluded
		}
		if !inRange(item.Key()) {
			break
		}
		key := string(item.Key()[len(k.prefix):])
		val, err := readValue(item)
		if err != nil {
			return fmt.Errorf("store: scan %s: read %s: %w", keyName(k.prefix, start), keyName(k.prefix, key), err)
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	return nil
}
