package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicia-home/alicia/hub/spec"
	"github.com/alicia-home/alicia/internal/cliconfig"
)

// configCommand exports and imports the configuration documents of a
// running hub (its /api/v1/config-export and /api/v1/config-import).
const configCommand = "config"

const configUsage = "usage: alicia-hub config export [--to FILE] | import --from FILE [--dry-run] [--hub URL] [--data-dir DIR] [--config FILE] (with the hub running)"

// configIO runs "alicia-hub config export|import".
func configIO(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "export" && args[0] != "import" {
		return errors.New(configUsage)
	}
	verb := args[0]
	fset, o := newFlagSet("alicia-hub config "+verb, stderr)
	hub := fset.String("hub", "", "the running hub's API `url` (default: http:// and --http-addr, on loopback)")
	to := fset.String("to", "", "export: `file` to write (default alicia-config-<time>.json here)")
	from := fset.String("from", "", "import: export `file` to read")
	dry := fset.Bool("dry-run", false, "import: report what would be done, write nothing")
	fset.Usage = usage(fset, stderr, []string{configUsage,
		"export writes every configuration document with every version to FILE; import reads one into the hub, checked whole first,",
		"refused (nothing written) where the hub has other documents of its kinds. Run import with --dry-run first.",
		"The other flags of alicia-hub are accepted and ignored, so the hub's --config file serves as is."}, "hub", "to", "from", "dry-run")
	if err := cliconfig.Parse(fset, args[1:], getenv); err != nil {
		return err
	}
	base := *hub
	if base == "" {
		var err error
		if base, err = loopbackURL(o.cfg.HTTPAddr); err != nil {
			return fmt.Errorf("config %s: --http-addr: %w (give --hub)", verb, err)
		}
	}
	if verb == "export" {
		path := *to
		if path == "" {
			path = "alicia-config-" + time.Now().UTC().Format("20060102T150405Z") + ".json"
		}
		if err := exportConfig(ctx, base, o.cfg.DataDir, path, stdout); err != nil {
			return fmt.Errorf("config export: %w", err)
		}
		return nil
	}
	if *from == "" {
		return errors.New(configUsage)
	}
	if err := importConfig(ctx, base, o.cfg.DataDir, *from, *dry, stdout); err != nil {
		return fmt.Errorf("config import %s: %w", *from, err)
	}
	return nil
}

// adminCall sends an admin request to the hub's API at base, with the
// admin token of dataDir.
func adminCall(ctx context.Context, base, dataDir, method, path string, body []byte) (*http.Response, error) {
	tok, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		return nil, fmt.Errorf("read the admin token: %w (run this as the hub's user with the hub's --data-dir or --config)", err)
	}
	client, err := apiClient(base, dataDir)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(base, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("--hub %q: %w", base, err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is the hub running? give its address with --hub)", err)
	}
	return resp, nil
}

// answerError is a problem answer as an error.
func answerError(resp *http.Response, body []byte) error {
	var p struct{ Detail string }
	_ = json.Unmarshal(body, &p)
	return fmt.Errorf("the hub answered %s: %s", resp.Status, p.Detail)
}

// exportConfig downloads the export and writes it to path (0600) in one
// step.
func exportConfig(ctx context.Context, base, dataDir, path string, stdout io.Writer) error {
	resp, err := adminCall(ctx, base, dataDir, http.MethodGet, "/api/v1/config-export", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return answerError(resp, b)
	}
	var f spec.ExportFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("the hub's export is not JSON: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	versions := 0
	for _, d := range f.Documents {
		versions += len(d.Versions)
	}
	fmt.Fprintf(stdout, "wrote %s: %d documents, %d versions\n", path, len(f.Documents), versions)
	return nil
}

// importConfig posts the file at path and prints the report.
func importConfig(ctx context.Context, base, dataDir, path string, dry bool, stdout io.Writer) error {
	body, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	resp, err := adminCall(ctx, base, dataDir, http.MethodPost, fmt.Sprintf("/api/v1/config-import?dry_run=%t", dry), body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var answer struct {
		Detail string      `json:"detail"`
		Report spec.Report `json:"report"`
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.Unmarshal(b, &answer.Report); err != nil {
			return fmt.Errorf("the hub's report: %w", err)
		}
	case http.StatusConflict:
		if err := json.Unmarshal(b, &answer); err != nil {
			return answerError(resp, b)
		}
	default:
		return answerError(resp, b)
	}
	rep := answer.Report
	for _, d := range rep.Documents {
		line := fmt.Sprintf("%-9s %s %s: %d versions in the file, %d here", d.Outcome, d.Kind, d.Scope, d.FileVersions, d.HubVersions)
		if d.Detail != "" {
			line += " (" + d.Detail + ")"
		}
		fmt.Fprintln(stdout, line)
	}
	if resp.StatusCode == http.StatusConflict {
		return fmt.Errorf("%d documents conflict, nothing written: import into a hub without documents of these kinds", rep.Conflicts)
	}
	did := "imported"
	if dry {
		did = "dry run, nothing written: would import"
	}
	fmt.Fprintf(stdout, "%s %d documents (%d versions), %d unchanged\n", did, rep.Created, rep.VersionsWritten, rep.Unchanged)
	return nil
}
