package store

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// A backup stream is
//
//	"alicia-store-backup 1\n"
//	frames: u32 length n (1..maxFrame, big-endian), u32 CRC-32C of the data, n bytes
//	end:    u32 0, then the SHA-256 of every frame's data in order
//
// and the frames' data, concatenated, is badger's own backup format
// (length-prefixed protobuf lists of entries). Badger's Load cannot tell a
// stream cut at a list boundary from a whole one, and trusts each list's
// length; the framing lets Restore refuse a truncated or damaged stream
// before badger reads a byte of it.
const backupMagic = "alicia-store-backup 1\n"

// maxFrame bounds a frame's length, so that a damaged length cannot make
// Restore allocate much.
const maxFrame = 1 << 20

// ErrBadBackup is returned (wrapped) by Restore for a stream that is not a
// whole, undamaged store backup.
var ErrBadBackup = errors.New("not a whole store backup")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Backup writes a consistent snapshot of the whole store to w (the
// database as of one read timestamp; writes may go on meanwhile) and
// returns how many bytes it wrote. The stream checks itself: Restore
// refuses one that is truncated or damaged. Close stops a backup in
// progress (it fails with ErrClosed).
func (db *DB) Backup(w io.Writer) (int64, error) {
	if err := db.enter(); err != nil {
		return 0, fmt.Errorf("store: backup: %w", err)
	}
	defer db.exit()
	fw := &frameWriter{w: w, sum: sha256.New(), done: db.done}
	if _, err := io.WriteString(fw.countingWriter(), backupMagic); err != nil {
		return fw.n, fmt.Errorf("store: backup: %w", err)
	}
	if _, err := db.bdb.Backup(fw, 0); err != nil {
		return fw.n, fmt.Errorf("store: backup %s: %w", db.dir, err)
	}
	if err := fw.end(); err != nil {
		return fw.n, fmt.Errorf("store: backup: %w", err)
	}
	return fw.n, nil
}

// frameWriter frames what badger writes.
type frameWriter struct {
	w    io.Writer
	sum  hash.Hash
	done <-chan struct{}
	n    int64
}

type counter struct{ fw *frameWriter }

func (c counter) Write(p []byte) (int, error) {
	n, err := c.fw.w.Write(p)
	c.fw.n += int64(n)
	return n, err
}

func (fw *frameWriter) countingWriter() io.Writer { return counter{fw} }

func (fw *frameWriter) Write(p []byte) (int, error) {
	select {
	case <-fw.done:
		return 0, ErrClosed
	default:
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxFrame)]
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(chunk)))
		binary.BigEndian.PutUint32(hdr[4:], crc32.Checksum(chunk, castagnoli))
		if _, err := fw.countingWriter().Write(hdr[:]); err != nil {
			return written, err
		}
		if _, err := fw.countingWriter().Write(chunk); err != nil {
			return written, err
		}
		fw.sum.Write(chunk)
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

func (fw *frameWriter) end() error {
	var zero [4]byte
	if _, err := fw.countingWriter().Write(zero[:]); err != nil {
		return err
	}
	_, err := fw.countingWriter().Write(fw.sum.Sum(nil))
	return err
}

// frameReader reads a backup stream's frames back, checking each before
// handing out its data, and returns io.EOF only after a whole, matching
// end. It reads r exactly up to the end of the stream, no further.
type frameReader struct {
	r     io.Reader
	sum   hash.Hash
	buf   []byte // the current frame's unread data
	frame int    // frames read so far
	off   int64  // bytes of r read so far
	err   error  // sticky
}

func (fr *frameReader) readFull(p []byte, what string) error {
	n, err := io.ReadFull(fr.r, p)
	fr.off += int64(n)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated at byte %d, in %s", ErrBadBackup, fr.off, what)
	}
	return err
}

func (fr *frameReader) Read(p []byte) (int, error) {
	for len(fr.buf) == 0 && fr.err == nil {
		fr.err = fr.next()
	}
	if len(fr.buf) == 0 {
		return 0, fr.err
	}
	n := copy(p, fr.buf)
	fr.buf = fr.buf[n:]
	return n, nil
}

// next reads the next frame into buf, or the end (then io.EOF).
func (fr *frameReader) next() error {
	var hdr [4]byte
	what := fmt.Sprintf("the header of frame %d", fr.frame+1)
	if err := fr.readFull(hdr[:], what); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		want := make([]byte, sha256.Size)
		if err := fr.readFull(want, "the end checksum"); err != nil {
			return err
		}
		if got := fr.sum.Sum(nil); string(got) != string(want) {
			return fmt.Errorf("%w: the end checksum (byte %d) does not match the %d frames read", ErrBadBackup, fr.off, fr.frame)
		}
		return io.EOF
	}
	if n > maxFrame {
		return fmt.Errorf("%w: frame %d at byte %d claims %d bytes (at most %d)", ErrBadBackup, fr.frame+1, fr.off-4, n, maxFrame)
	}
	if err := fr.readFull(hdr[:], what); err != nil {
		return err
	}
	crc := binary.BigEndian.Uint32(hdr[:])
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	data := fr.buf[:n]
	if err := fr.readFull(data, fmt.Sprintf("frame %d", fr.frame+1)); err != nil {
		return err
	}
	fr.frame++
	if crc32.Checksum(data, castagnoli) != crc {
		return fmt.Errorf("%w: frame %d (ending at byte %d) fails its checksum", ErrBadBackup, fr.frame, fr.off)
	}
	fr.sum.Write(data)
	fr.buf = data
	return nil
}

// VerifyBackup reads a backup stream from r up to its end (no further)
// and checks it as Restore would, without loading it anywhere. It returns
// the stream's length.
func VerifyBackup(r io.Reader) (int64, error) {
	if err := readMagic(r); err != nil {
		return 0, fmt.Errorf("store: verify backup: %w", err)
	}
	fr := &frameReader{r: r, sum: sha256.New(), off: int64(len(backupMagic))}
	if _, err := io.Copy(io.Discard, fr); err != nil {
		return fr.off, fmt.Errorf("store: verify backup: %w", err)
	}
	return fr.off, nil
}

// readMagic reads and checks the stream's first line.
func readMagic(r io.Reader) error {
	magic := make([]byte, len(backupMagic))
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != backupMagic {
		return fmt.Errorf("%w: it does not start with %q", ErrBadBackup, backupMagic[:len(backupMagic)-1])
	}
	return nil
}

// Restore creates a store in dir (which must be missing or empty) holding
// what the backup stream r holds, and closes it. It reads r up to the
// stream's end and no further. A truncated or damaged stream fails with
// ErrBadBackup, naming where, and leaves dir as it found it.
func Restore(dir string, r io.Reader) (err error) {
	entries, err := os.ReadDir(dir)
	existed := err == nil
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("store: restore into %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("store: restore into %s: the directory is not empty (a restore never overwrites a store)", dir)
	}
	if err := readMagic(r); err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	db, err := Open(Options{Dir: dir, FastOpen: true})
	if err != nil {
		return fmt.Errorf("store: restore: %w", err)
	}
	defer func() {
		if cerr := db.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("store: restore: %w", cerr)
		}
		if err != nil {
			removeRestored(dir, existed)
		}
	}()
	fr := &frameReader{r: r, sum: sha256.New(), off: int64(len(backupMagic))}
	if err := load(db, fr); err != nil {
		if fr.err != nil && !errors.Is(fr.err, io.EOF) {
			err = fr.err // the stream's own fault, said plainly
		}
		return fmt.Errorf("store: restore into %s: %w", dir, err)
	}
	if !errors.Is(fr.err, io.EOF) {
		return fmt.Errorf("store: restore into %s: %w: badger stopped before the end of the stream", dir, ErrBadBackup)
	}
	return nil
}

// load is badger's Load, with a panic turned into an error.
func load(db *DB, r io.Reader) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: badger could not load it: %v", ErrBadBackup, p)
		}
	}()
	return db.bdb.Load(r, 256)
}

// removeRestored removes what a failed Restore put in dir: dir itself if it did
// not exist before.
func removeRestored(dir string, existed bool) {
	if !existed {
		os.RemoveAll(dir)
		return
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		os.RemoveAll(filepath.Join(dir, e.Name()))
	}
}
