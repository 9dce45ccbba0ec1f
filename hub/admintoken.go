package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/cliconfig"
	"github.com/alicia-home/alicia/internal/store"
)

// adminTokenCommand is the subcommand that manages the admin token.
const adminTokenCommand = "admin-token"

const adminTokenUsage = "usage: alicia-hub admin-token rotate [--data-dir DIR] [--config FILE] (with the hub stopped)"

// adminToken runs "alicia-hub admin-token rotate": it reads --data-dir from
// the flags, the environment and the config file as the hub does, and
// replaces the admin token (file and stored hash).
func adminToken(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "rotate" {
		return errors.New(adminTokenUsage)
	}
	fset, o := newFlagSet("alicia-hub admin-token rotate", stderr)
	fset.Usage = func() {
		fmt.Fprintln(stderr, adminTokenUsage)
		fmt.Fprintln(stderr, "Writes a new admin token to DIR/admin.token (0600) and makes it the only one the REST API accepts.")
		fmt.Fprintln(stderr, "The other flags of alicia-hub are accepted and ignored, so the hub's --config file serves as is.")
		for _, name := range []string{"data-dir", cliconfig.ConfigFlag} {
			f := fset.Lookup(name)
			fmt.Fprintf(stderr, "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		}
	}
	if err := cliconfig.Parse(fset, args[1:], getenv); err != nil {
		return err
	}
	if o.cfg.DataDir == "" {
		return errors.New("admin-token rotate: --data-dir: empty")
	}
	path, err := rotateAdminToken(o.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("admin-token rotate: %w", err)
	}
	fmt.Fprintf(stdout, "wrote a new admin token to %s; the previous one no longer works. Start the hub again.\n", path)
	return nil
}

// rotateAdminToken replaces the admin token of the hub whose data
// directory is dataDir and returns the token file's path. It refuses a
// directory without a hub store, one owned by another user (the store's
// new files would be theirs no more, and the hub could not open them), and
// a store the running hub holds.
func rotateAdminToken(dataDir string) (string, error) {
	storeDir := filepath.Join(dataDir, "store")
	if _, err := os.Stat(storeDir); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no hub store in %s: is --data-dir right? (the hub creates it on its first start)", dataDir)
	} else if err != nil {
		return "", err
	}
	if err := checkOwner(dataDir); err != nil {
		return "", err
	}
	db, err := store.Open(store.Options{Dir: storeDir})
	if errors.Is(err, store.ErrLocked) {
		return "", fmt.Errorf("the hub is running on %s (%w): stop it first (sudo systemctl stop alicia-hub), run this again, then start it", dataDir, err)
	}
	if err != nil {
		return "", err
	}
	path := filepath.Join(dataDir, "admin.token")
	err = tokens.Open(db, tokens.Config{}).RotateAdmin(path)
	if cerr := db.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return path, err
}

// checkOwner refuses to work on dir as another user than its owner.
func checkOwner(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) == os.Geteuid() {
		return nil
	}
	owner := strconv.Itoa(int(st.Uid))
	if u, err := user.LookupId(owner); err == nil {
		owner = u.Username
	}
	return fmt.Errorf("%s belongs to user %s: run this as that user (sudo -u %s alicia-hub …), so that the hub can still open the files it writes", dir, owner, owner)
}
