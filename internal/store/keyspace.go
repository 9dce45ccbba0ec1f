package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Keyspace is a named set of keys in a DB, stored under the prefix "name/".
// Keyspaces never see each other's keys. It is a small value, cheap to copy
// and safe for concurrent use; the zero Keyspace fails every operation.
type Keyspace struct {
	db     *DB
	prefix string // name + "/"
}

// Keyspace returns the keyspace called name. It panics if name does not
// match [a-z][a-z0-9_]*: names are constants in the program, so a bad one is
// a programming error.
func (db *DB) Keyspace(name string) Keyspace {
	if !validName(name) {
		panic(fmt.Sprintf("store: invalid keyspace name %q: must match [a-z][a-z0-9_]*", name))
	}
	return Keyspace{db: db, prefix: name + "/"}
}

func validName(name string) bool {
	if name == "" || name[0] < 'a' || name[0] > 'z' {
		return false
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Name returns the keyspace's name.
func (k Keyspace) Name() string { return strings.TrimSuffix(k.prefix, "/") }

// Get returns a copy of the value of key, or an error wrapping ErrNotFound.
func (k Keyspace) Get(key string) ([]byte, error) {
	val, err := k.get(key)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", keyName(k.prefix, key), err)
	}
	return val, nil
}

func (k Keyspace) get(key string) ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	if err := k.db.enter(); err != nil {
		return nil, err
	}
	defer k.db.exit()
	txn := k.db.bdb.NewTransaction(false)
	defer txn.Discard()
	return (&Tx{db: k.db, txn: txn}).get(k, key)
}

// Put sets key to val. It is durable on disk when it returns nil.
func (k Keyspace) Put(key string, val []byte) error {
	return k.update("put", key, func(tx *Tx) error { return tx.put(k, key, val) })
}

// Delete removes key; deleting a missing key is not an error. It is durable
// on disk when it returns nil.
func (k Keyspace) Delete(key string) error {
	return k.update("delete", key, func(tx *Tx) error { return tx.delete(k, key) })
}

// Scan calls fn for every key of the keyspace in byte order, with the key
// without the keyspace prefix and a copy of its value, from one consistent
// snapshot. It stops at the first error fn returns and returns that error
// unchanged. fn may use the DB, but writes it makes are not seen by the scan.
func (k Keyspace) Scan(fn func(key string, val []byte) error) error {
	return k.ScanPrefix("", fn)
}

// ScanPrefix is Scan restricted to the keys that start with prefix.
func (k Keyspace) ScanPrefix(prefix string, fn func(key string, val []byte) error) error {
	if err := k.check(); err != nil {
		return fmt.Errorf("store: scan %s: %w", keyName(k.prefix, prefix), err)
	}
	if err := k.db.enter(); err != nil {
		return fmt.Errorf("store: scan %s: %w", keyName(k.prefix, prefix), err)
	}
	defer k.db.exit()
	txn := k.db.bdb.NewTransaction(false)
	defer txn.Discard()
	return scan(txn, k, prefix, fn)
}

// update runs fn in its own synced read-write transaction and wraps every
// error with op and key.
func (k Keyspace) update(op, key string, fn func(*Tx) error) error {
	err := k.check()
	if err == nil {
		var fnErr error
		fnErr, err = k.db.update(fn)
		if fnErr != nil {
			err = fnErr
		}
	}
	if err != nil {
		return fmt.Errorf("store: %s %s: %w", op, keyName(k.prefix, key), err)
	}
	return nil
}

// check reports a zero Keyspace.
func (k Keyspace) check() error {
	if k.db == nil {
		return errors.New("zero Keyspace (use DB.Keyspace)")
	}
	return nil
}

// fullKey returns prefix+key as badger's key, refusing invalid keys.
func fullKey(prefix, key string) ([]byte, error) {
	switch {
	case key == "":
		return nil, fmt.Errorf("%w: empty", ErrInvalidKey)
	case strings.IndexByte(key, 0) >= 0:
		return nil, fmt.Errorf("%w: contains a NUL byte", ErrInvalidKey)
	}
	b := make([]byte, 0, len(prefix)+len(key))
	return append(append(b, prefix...), key...), nil
}

// keyName renders prefix+key for error messages, quoted if it is not plain
// printable text.
func keyName(prefix, key string) string {
	s := prefix + key
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == ' ' || !strconv.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// Tx is a transaction passed to the function given to DB.Update, UpdateLazy
// or View. It is valid only during that call and must not be shared between
// goroutines. In a View, Put and Delete fail.
type Tx struct {
	db  *DB
	txn *badger.Txn
}

// Get returns a copy of the value of key in k, or an error wrapping
// ErrNotFound. It sees the transaction's own writes.
func (tx *Tx) Get(k Keyspace, key string) ([]byte, error) {
	val, err := tx.get(k, key)
	if err != nil {
		return nil, fmt.Errorf("store: get %s: %w", keyName(k.prefix, key), err)
	}
	return val, nil
}

// Put sets key in k to a copy of val, applied when the transaction commits.
func (tx *Tx) Put(k Keyspace, key string, val []byte) error {
	if err := tx.put(k, key, val); err != nil {
		return fmt.Errorf("store: put %s: %w", keyName(k.prefix, key), err)
	}
	return nil
}

// Delete removes key from k when the transaction commits.
func (tx *Tx) Delete(k Keyspace, key string) error {
	if err := tx.delete(k, key); err != nil {
		return fmt.Errorf("store: delete %s: %w", keyName(k.prefix, key), err)
	}
	return nil
}

// ScanPrefix is Keyspace.ScanPrefix inside the transaction: it sees the
// transaction's snapshot and its own writes.
func (tx *Tx) ScanPrefix(k Keyspace, prefix string, fn func(key string, val []byte) error) error {
	if err := tx.checkKeyspace(k); err != nil {
		return fmt.Errorf("store: scan %s: %w", keyName(k.prefix, prefix), err)
	}
	return scan(tx.txn, k, prefix, fn)
}

func (tx *Tx) checkKeyspace(k Keyspace) error {
	if err := k.check(); err != nil {
		return err
	}
	if k.db != tx.db {
		return fmt.Errorf("keyspace %q belongs to another DB", k.Name())
	}
	return nil
}

// get, put and delete return errors without the "store: op key" context.

func (tx *Tx) get(k Keyspace, key string) ([]byte, error) {
	if err := tx.checkKeyspace(k); err != nil {
		return nil, err
	}
	bk, err := fullKey(k.prefix, key)
	if err != nil {
		return nil, err
	}
	item, err := tx.txn.Get(bk)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return readValue(item)
}

func (tx *Tx) put(k Keyspace, key string, val []byte) error {
	if err := tx.checkKeyspace(k); err != nil {
		return err
	}
	bk, err := fullKey(k.prefix, key)
	if err != nil {
		return err
	}
	// Badger keeps val until the commit; copy it so the caller may reuse it.
	return txnErr(tx.txn.Set(bk, bytes.Clone(val)))
}

func (tx *Tx) delete(k Keyspace, key string) error {
	if err := tx.checkKeyspace(k); err != nil {
		return err
	}
	bk, err := fullKey(k.prefix, key)
	if err != nil {
		return err
	}
	return txnErr(tx.txn.Delete(bk))
}

// txnErr maps badger's "transaction too big" to ErrTxnTooBig.
func txnErr(err error) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("%w (split the writes over several transactions)", ErrTxnTooBig)
	}
	return err
}

// scan iterates over k's keys starting with prefix in txn.
func scan(txn *badger.Txn, k Keyspace, prefix string, fn func(key string, val []byte) error) error {
	if strings.IndexByte(prefix, 0) >= 0 {
		return fmt.Errorf("store: scan %s: %w: prefix contains a NUL byte", keyName(k.prefix, prefix), ErrInvalidKey)
	}
	p := []byte(k.prefix + prefix)
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: p})
	defer it.Close()
	for it.Seek(p); it.ValidForPrefix(p); it.Next() {
		item := it.Item()
		key := string(item.Key()[len(k.prefix):])
		val, err := readValue(item)
		if err != nil {
			return fmt.Errorf("store: scan %s: read %s: %w", keyName(k.prefix, prefix), keyName(k.prefix, key), err)
		}
		if err := fn(key, val); err != nil {
			return err
		}
	}
	return nil
}

// GetJSON reads key from k and decodes it from JSON into a T. The error
// wraps ErrNotFound when the key is missing.
func GetJSON[T any](k Keyspace, key string) (T, error) {
	var v T
	b, err := k.Get(key)
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("store: decode %s: %w", keyName(k.prefix, key), err)
	}
	return v, nil
}

// PutJSON encodes v as JSON and puts it at key in k, durably.
func PutJSON(k Keyspace, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s: %w", keyName(k.prefix, key), err)
	}
	return k.Put(key, b)
}
