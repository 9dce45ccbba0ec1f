package backup

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/alicia-home/alicia/internal/atomicfile"
	"github.com/alicia-home/alicia/internal/store"
)

const magic = "alicia-hub-backup 1\n"

// maxManifest bounds the manifest's length, so that a damaged length
// cannot make Restore allocate much.
const maxManifest = 1 << 20

// StoreDir is the store's directory inside the data directory.
const StoreDir = "store"

// A File is a file of the data directory that a backup carries.
type File struct {
	Path     string      // relative to the data directory, slash-separated
	Mode     fs.FileMode // written with this mode
	Required bool        // a hub without it cannot be backed up
}

// Files are the data directory's files a backup carries besides the store.
var Files = []File{
	{Path: "pki/ca.key", Mode: 0o600, Required: true},
	{Path: "pki/ca.crt", Mode: 0o644, Required: true},
	// The plain admin token; its hash is in the store. Without it the
	// restored hub would refuse what the old file held.
	{Path: "admin.token", Mode: 0o600},
}

// ErrBad is returned (wrapped) for a stream that is not a whole,
// undamaged hub backup.
var ErrBad = errors.New("not a whole hub backup")

// manifest is the backup's table of files.
type manifest struct {
	Created time.Time         `json:"created"`
	Files   map[string][]byte `json:"files"`
}

// Write writes a backup of the hub whose data directory is dataDir and
// whose open store is db to w, and returns its length. The files are read
// before any byte is written, so a missing one fails Write with nothing
// written.
func Write(w io.Writer, db *store.DB, dataDir string) (int64, error) {
	m := manifest{Created: time.Now().UTC(), Files: map[string][]byte{}}
	for _, f := range Files {
		b, err := os.ReadFile(filepath.Join(dataDir, filepath.FromSlash(f.Path)))
		if errors.Is(err, fs.ErrNotExist) && !f.Required {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("backup: %w", err)
		}
		m.Files[f.Path] = b
	}
	js, err := json.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("backup: manifest: %w", err)
	}
	head := make([]byte, 0, len(magic)+4+len(js)+sha256.Size)
	head = append(head, magic...)
	head = binary.BigEndian.AppendUint32(head, uint32(len(js)))
	head = append(head, js...)
	sum := sha256.Sum256(js)
	head = append(head, sum[:]...)
	if _, err := w.Write(head); err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	n, err := db.Backup(w)
	if err != nil {
		return int64(len(head)) + n, fmt.Errorf("backup: %w", err)
	}
	return int64(len(head)) + n, nil
}

// readManifest reads and checks the backup's head.
func readManifest(r io.Reader) (manifest, error) {
	var m manifest
	head := make([]byte, len(magic)+4)
	if _, err := io.ReadFull(r, head); err != nil || string(head[:len(magic)]) != magic {
		return m, fmt.Errorf("%w: it does not start with %q", ErrBad, magic[:len(magic)-1])
	}
	n := binary.BigEndian.Uint32(head[len(magic):])
	if n > maxManifest {
		return m, fmt.Errorf("%w: its manifest claims %d bytes (at most %d)", ErrBad, n, maxManifest)
	}
	js := make([]byte, int(n)+sha256.Size)
	if _, err := io.ReadFull(r, js); err != nil {
		return m, fmt.Errorf("%w: truncated in its manifest", ErrBad)
	}
	js, want := js[:n], js[n:]
	if sum := sha256.Sum256(js); string(sum[:]) != string(want) {
		return m, fmt.Errorf("%w: its manifest fails its checksum", ErrBad)
	}
	if err := json.Unmarshal(js, &m); err != nil {
		return m, fmt.Errorf("%w: manifest: %v", ErrBad, err)
	}
	for path := range m.Files {
		if !slices.ContainsFunc(Files, func(f File) bool { return f.Path == path }) {
			return m, fmt.Errorf("%w: it holds %q, which is not a hub file", ErrBad, path)
		}
	}
	for _, f := range Files {
		if _, ok := m.Files[f.Path]; f.Required && !ok {
			return m, fmt.Errorf("%w: it lacks %s", ErrBad, f.Path)
		}
	}
	return m, nil
}

// Summary says what a backup holds.
type Summary struct {
	Created    time.Time
	Files      []string // paths, in Files order
	StoreBytes int64    // the store stream's length
}

// Verify reads a whole backup from r and checks it, writing nothing.
func Verify(r io.Reader) (Summary, error) {
	br := bufio.NewReader(r)
	m, err := readManifest(br)
	if err != nil {
		return Summary{}, fmt.Errorf("backup: verify: %w", err)
	}
	s := summarize(m)
	if s.StoreBytes, err = store.VerifyBackup(br); err != nil {
		return s, fmt.Errorf("backup: verify: %w", err)
	}
	if err := atEnd(br); err != nil {
		return s, fmt.Errorf("backup: verify: %w", err)
	}
	return s, nil
}

func summarize(m manifest) Summary {
	s := Summary{Created: m.Created}
	for _, f := range Files {
		if _, ok := m.Files[f.Path]; ok {
			s.Files = append(s.Files, f.Path)
		}
	}
	return s
}

// atEnd checks that nothing follows the store's stream.
func atEnd(br *bufio.Reader) error {
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		if err != nil {
			return err
		}
		return fmt.Errorf("%w: data follows the store's end", ErrBad)
	}
	return nil
}

// Restore makes dataDir the hub that the backup r holds. dataDir must be
// missing or an empty directory, and a failure leaves it as it was. A
// missing dataDir is built next to it and renamed into place at the end.
// An existing empty one (as a package or an administrator created it, with
// its owner: the parent may not be writable) is built in a hidden
// directory inside it whose entries are moved up at the end, the store
// last.
func Restore(r io.Reader, dataDir string) (s Summary, err error) {
	dataDir = filepath.Clean(dataDir)
	existed := false
	switch entries, err := os.ReadDir(dataDir); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return s, fmt.Errorf("restore: %w", err)
	case len(entries) > 0:
		return s, fmt.Errorf("restore: %s is not empty: a restore never overwrites a hub (move it aside, or choose another --data-dir)", dataDir)
	default:
		existed = true
	}
	parent, stageIn := filepath.Dir(dataDir), filepath.Dir(dataDir)
	if existed {
		stageIn = dataDir
	} else if err := os.MkdirAll(parent, 0o755); err != nil {
		return s, fmt.Errorf("restore: %w", err)
	}
	tmp, err := os.MkdirTemp(stageIn, "."+filepath.Base(dataDir)+".restore-*")
	if err != nil {
		return s, fmt.Errorf("restore: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if s, err = build(r, tmp); err != nil {
		return s, fmt.Errorf("restore: %w", err)
	}
	if err := syncTree(tmp); err != nil {
		return s, fmt.Errorf("restore: sync: %w", err)
	}
	if !existed {
		if err := os.Rename(tmp, dataDir); err != nil {
			return s, fmt.Errorf("restore: %w", err)
		}
		return s, syncDir(parent)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return s, fmt.Errorf("restore: %w", err)
	}
	// The store last: a data directory with a store is a hub.
	slices.SortStableFunc(entries, func(a, b fs.DirEntry) int {
		return boolInt(a.Name() == StoreDir) - boolInt(b.Name() == StoreDir)
	})
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dataDir, e.Name())); err != nil {
			return s, fmt.Errorf("restore: %w", err)
		}
	}
	if err := os.Remove(tmp); err != nil {
		return s, fmt.Errorf("restore: %w", err)
	}
	return s, syncDir(dataDir)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// build writes the hub the backup r holds into the empty directory dir.
func build(r io.Reader, dir string) (s Summary, err error) {
	if err := os.Chmod(dir, 0o700); err != nil {
		return s, err
	}
	br := bufio.NewReader(r)
	m, err := readManifest(br)
	if err != nil {
		return s, err
	}
	s = summarize(m)
	for _, f := range Files {
		b, ok := m.Files[f.Path]
		if !ok {
			continue
		}
		path := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return s, err
		}
		if err := atomicfile.WriteFile(path, b, f.Mode); err != nil {
			return s, fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	cr := &countingReader{r: br}
	if err := store.Restore(filepath.Join(dir, StoreDir), cr); err != nil {
		return s, err
	}
	s.StoreBytes = cr.n
	return s, atEnd(br)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// syncTree fsyncs every file and directory under dir (the store's files
// are synced by badger; its directory entries and ours are not).
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return syncDir(path)
	})
}

// syncDir fsyncs one file or directory.
func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
