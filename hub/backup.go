package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/backup"
	"github.com/alicia-home/alicia/internal/cliconfig"
)

// The subcommands that back up a running hub and restore one.
const (
	backupCommand  = "backup"
	restoreCommand = "restore"
)

const (
	backupUsage  = "usage: alicia-hub backup [--to FILE] [--hub URL] [--data-dir DIR] [--config FILE] (with the hub running)"
	restoreUsage = "usage: alicia-hub restore --from FILE [--data-dir DIR] [--config FILE] (into a missing or empty DIR)"
)

// usage prints a subcommand's usage and the flags it uses.
func usage(fset *flag.FlagSet, stderr io.Writer, lines []string, flags ...string) func() {
	return func() {
		for _, l := range lines {
			fmt.Fprintln(stderr, l)
		}
		for _, name := range append(flags, "data-dir", cliconfig.ConfigFlag) {
			f := fset.Lookup(name)
			fmt.Fprintf(stderr, "  --%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		}
	}
}

// backupHub runs "alicia-hub backup": it asks the running hub for a backup
// (GET /api/v1/backup with the admin token of --data-dir), checks it, and
// writes it to --to (mode 0600) in one step.
func backupHub(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fset, o := newFlagSet("alicia-hub backup", stderr)
	to := fset.String("to", "", "backup `file` to write (default alicia-hub-<time>.backup here)")
	hub := fset.String("hub", "", "the running hub's API `url` (default: http:// and --http-addr, on loopback)")
	fset.Usage = usage(fset, stderr, []string{backupUsage,
		"Writes an online, consistent backup of the whole hub (store, CA, admin token) to FILE (0600). It is secret: it holds the CA key.",
		"The other flags of alicia-hub are accepted and ignored, so the hub's --config file serves as is."}, "to", "hub")
	if err := cliconfig.Parse(fset, args, getenv); err != nil {
		return err
	}
	if o.cfg.DataDir == "" {
		return errors.New("backup: --data-dir: empty")
	}
	base := *hub
	if base == "" {
		var err error
		if base, err = loopbackURL(o.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("backup: --http-addr: %w (give --hub)", err)
		}
	}
	path := *to
	if path == "" {
		path = "alicia-hub-" + time.Now().UTC().Format("20060102T150405Z") + ".backup"
	}
	start := time.Now()
	s, n, err := fetchBackup(ctx, base, o.cfg.DataDir, path)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes (store %d bytes; %s) in %s. Keep it secret: it holds the CA key and the admin token.\n",
		path, n, s.StoreBytes, strings.Join(s.Files, ", "), time.Since(start).Round(time.Millisecond))
	return nil
}

// loopbackURL is the API's URL on this machine for the listen address addr.
func loopbackURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// fetchBackup downloads the backup into a temporary file next to path,
// verifies it, and renames it to path.
func fetchBackup(ctx context.Context, base, dataDir, path string) (backup.Summary, int64, error) {
	var s backup.Summary
	tokPath := filepath.Join(dataDir, "admin.token")
	tok, err := os.ReadFile(tokPath)
	if err != nil {
		return s, 0, fmt.Errorf("read the admin token: %w (run this as the hub's user, e.g. sudo -u alicia-hub, with the hub's --data-dir or --config)", err)
	}
	client, err := apiClient(base, dataDir)
	if err != nil {
		return s, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/backup", nil)
	if err != nil {
		return s, 0, fmt.Errorf("--hub %q: %w", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := client.Do(req)
	if err != nil {
		return s, 0, fmt.Errorf("%w (is the hub running? give its address with --hub)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p)
		return s, 0, fmt.Errorf("the hub answered %s: %s", resp.Status, p.Detail)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return s, 0, err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(0o600); err != nil {
		return s, 0, err
	}
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		return s, n, fmt.Errorf("download: %w after %d bytes", err, n)
	}
	if err := f.Sync(); err != nil {
		return s, n, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return s, n, err
	}
	if s, err = backup.Verify(f); err != nil {
		return s, n, fmt.Errorf("the hub's backup does not check out (nothing written to %s): %w", path, err)
	}
	if err := f.Close(); err != nil {
		return s, n, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return s, n, err
	}
	done = true
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		defer d.Close()
		if err := d.Sync(); err != nil {
			return s, n, fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
		}
	}
	return s, n, nil
}

// apiClient is an HTTP client for the hub at base: over https it trusts
// the hub's CA from dataDir.
func apiClient(base, dataDir string) (*http.Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--hub %q: want http://host:port or https://host:port", base)
	}
	c := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if u.Scheme == "https" {
		pem, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
		if err != nil {
			return nil, fmt.Errorf("the hub CA, to check the hub over https: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificate", filepath.Join(dataDir, "pki", "ca.crt"))
		}
		c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	}
	return c, nil
}

// restoreHub runs "alicia-hub restore": it makes --data-dir (missing or
// empty) the hub that --from holds.
func restoreHub(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fset, o := newFlagSet("alicia-hub restore", stderr)
	from := fset.String("from", "", "backup `file` written by alicia-hub backup")
	fset.Usage = usage(fset, stderr, []string{restoreUsage,
		"Makes DIR the hub the backup holds: same hub ID, CA, devices and configuration. It never writes into a DIR that holds anything.",
		"Run it as the hub's user (sudo -u alicia-hub) so that the hub can open what it writes.",
		"The other flags of alicia-hub are accepted and ignored, so the hub's --config file serves as is."}, "from")
	if err := cliconfig.Parse(fset, args, getenv); err != nil {
		return err
	}
	if *from == "" {
		return errors.New(restoreUsage)
	}
	if o.cfg.DataDir == "" {
		return errors.New("restore: --data-dir: empty")
	}
	if _, err := os.Stat(o.cfg.DataDir); err == nil {
		if err := checkOwner(o.cfg.DataDir); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	f, err := os.Open(*from)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	s, err := backup.Restore(f, o.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("restore %s: %w", *from, err)
	}
	fmt.Fprintf(stdout, "restored the hub backed up at %s into %s (store %d bytes; %s). Start the hub on it, reachable at the address its agents know: they reconnect on their own.\n",
		s.Created.Format(time.RFC3339), o.cfg.DataDir, s.StoreBytes, strings.Join(s.Files, ", "))
	return nil
}
