package cliconfig

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzConfigFile: Parse never panics on a config file; it refuses one
// with an error that names the file; what it accepts, written back as a
// YAML file of the flags' values, gives the same values again.
func FuzzConfigFile(f *testing.F) {
	for _, s := range []string{
		"", "data-dir: /from-file\nhttp-addr: ':1'\ninterval: 5s\nno-mdns: true\n", "data-dir: /x\nbogus: 1\n",
		"interval: soon\n", "- a\n- b\n", "data-dir: {a: b}\n", "data-dir: /a\ndata-dir: /b\n", "data-dir: [\n",
		"http-addr: [a, b, c]\n", "data-dir: \"\\x00\\u00e9\"\nno-mdns: 'false'\n", "---\n...\n", "data-dir: &a x\nhttp-addr: *a\n",
		"# only a comment\n", "interval: 1h2m3.5s\nno-mdns:\n",
	} {
		f.Add(s)
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, in string) {
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
			t.Fatal(err)
		}
		fs, o := newFS()
		if err := Parse(fs, []string{"--config", path}, env(nil)); err != nil {
			if !strings.HasPrefix(err.Error(), "config file "+path+": ") {
				t.Fatalf("error %q does not name the config file", err)
			}
			return
		}
		values := map[string]string{}
		fs.VisitAll(func(fl *flag.Flag) {
			if fl.Name != ConfigFlag {
				values[fl.Name] = fl.Value.String()
			}
		})
		out, err := yaml.Marshal(values)
		if err != nil {
			t.Fatalf("yaml.Marshal(%q): %v", values, err)
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		fs2, o2 := newFS()
		if err := Parse(fs2, []string{"--config", path}, env(nil)); err != nil {
			t.Fatalf("the values of an accepted file, written back as\n%s\nare refused: %v", out, err)
		}
		if *o2 != *o {
			t.Fatalf("written back as\n%s\nthe file gives %+v, first %+v", out, *o2, *o)
		}
	})
}
