package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A README example is a ```sh block. The HTML comment on the line before
// it, if any, tells this test how to run it:
//
//	<!-- readme-test: skip (reason) -->          not run; the reason is required
//	<!-- readme-test: until-stopped (reason) --> runs in the background until the end
//	<!-- readme-test: person-sets A B (how) -->  a person sets the variables A and B first
//
// Every other block runs to completion and must succeed and print
// something.
type readmeBlock struct {
	file      string // relative to the repository's root
	line      int    // of the opening fence
	directive string // "", "skip", "until-stopped" or "person-sets"
	args      []string
	code      string
}

var directiveRE = regexp.MustCompile(`^<!-- readme-test: (skip|until-stopped|person-sets)((?: [A-Z_]+)*) \((.+)\) -->$`)

func readmeBlocks(t *testing.T, path string) []readmeBlock {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	var blocks []readmeBlock
	for i := 0; i < len(lines); i++ {
		if lines[i] != "```sh" {
			continue
		}
		blk := readmeBlock{file: filepath.Base(path), line: i + 1}
		if i > 0 && strings.HasPrefix(lines[i-1], "<!-- readme-test") {
			m := directiveRE.FindStringSubmatch(lines[i-1])
			if m == nil {
				t.Fatalf("%s:%d: %q: want <!-- readme-test: skip|until-stopped|person-sets [VARS] (reason) -->", path, i, lines[i-1])
			}
			blk.directive, blk.args = m[1], strings.Fields(m[2])
		}
		var code []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			code = append(code, lines[i])
		}
		blk.code = strings.Join(code, "\n")
		blocks = append(blocks, blk)
	}
	return blocks
}

// docsRunAsTests are the documents besides README.md whose shell examples
// TestReadmeExamples runs.
var docsRunAsTests = []string{"docs/config.md", "docs/scheduler.md", "docs/metrics.md"}

// sessionVars are the shell variables the README's examples set and use,
// carried from one block to the next as a person's shell carries them.
var sessionVars = []string{"API", "TOKEN", "ID", "JOIN", "NEW", "CODE"}

// background is an example that runs until the test stops it.
type background struct {
	blk  readmeBlock
	cmd  *exec.Cmd
	out  *logBuffer
	done chan error
}

// TestReadmeExamples runs every shell example of README.md (and of
// docsRunAsTests), as written, in
// one shell session against `ALICIA_HAL=sim make run` (its .run directory
// is the session's), with curl failing on HTTP errors (--fail-with-body)
// so that a 4xx answer fails the example.
func TestReadmeExamples(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, filepath.Join(root, "README.md"))
	if len(blocks) < 8 {
		t.Fatalf("%d shell examples in README.md; the parser lost some", len(blocks))
	}
	// Then the docs whose examples run against a make run hub, in the
	// same session.
	for _, doc := range docsRunAsTests {
		db := readmeBlocks(t, filepath.Join(root, doc))
		if len(db) == 0 {
			t.Fatalf("no shell examples in %s", doc)
		}
		for i := range db {
			db[i].file = doc
		}
		blocks = append(blocks, db...)
	}
	dir := t.TempDir()
	run := startMakeRun(t, dir, "ALICIA_HAL=sim")
	work := t.TempDir() // the person's working directory: .run is make run's
	if err := os.Symlink(dir, filepath.Join(work, ".run")); err != nil {
		t.Fatal(err)
	}
	session := filepath.Join(work, "session.sh")
	if err := os.WriteFile(session, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	hubAddr := strings.TrimPrefix(run.api.base, "http://")
	env := append(os.Environ(), "PATH="+filepath.Join(root, "bin")+":"+os.Getenv("PATH"),
		// The devices of the examples run here, on the hub's loopback
		// (make run's hub does not announce itself with mDNS).
		"ALICIA_HUB="+hubAddr)
	prelude := "set -euo pipefail\ncurl() { command curl --fail-with-body \"$@\"; }\nsource " + session + "\n"
	save := "\ndeclare -p " + strings.Join(sessionVars, " ") + " 2>/dev/null >" + session + " || true\n"

	var bg []*background
	t.Cleanup(func() {
		for _, b := range bg {
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-b.done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
				<-b.done
			}
		}
	})
	for i, blk := range blocks {
		name := fmt.Sprintf("%s:%d", blk.file, blk.line)
		blockEnv := append(env, fmt.Sprintf("ALICIA_STATE_DIR=%s/device-%d", work, i), fmt.Sprintf("ALICIA_NAME=readme-%d", i))
		switch blk.directive {
		case "skip":
			t.Logf("%s: not run (skip)", name)
			continue
		case "until-stopped":
			b := &background{blk: blk, out: &logBuffer{}, done: make(chan error, 1)}
			b.cmd = exec.Command("bash", "-c", prelude+blk.code)
			b.cmd.Dir, b.cmd.Env, b.cmd.Stdout, b.cmd.Stderr = work, blockEnv, b.out, b.out
			b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := b.cmd.Start(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			go func() { b.done <- b.cmd.Wait() }()
			bg = append(bg, b)
			// It must be up and saying something, not failing at once.
			deadline := time.Now().Add(10 * time.Second)
			for b.out.String() == "" && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond) // polling its output
			}
			select {
			case err := <-b.done:
				t.Fatalf("%s exited (%v) instead of running until stopped:\n%s\n--- output ---\n%s", name, err, blk.code, b.out)
			default:
			}
			if b.out.String() == "" {
				t.Fatalf("%s printed nothing in 10 s:\n%s", name, blk.code)
			}
			continue
		case "person-sets":
			// The only such example is the pairing approval: the person
			// reads the code and ID the pairing device logged.
			vals := pairingFromLogs(t, bg)
			var set strings.Builder
			for _, v := range blk.args {
				val, ok := vals[v]
				if !ok {
					t.Fatalf("%s: the test does not know how a person sets %s", name, v)
				}
				fmt.Fprintf(&set, "%s=%q\n", v, val)
			}
			f, err := os.OpenFile(session, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteString(set.String())
			f.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		cmd := exec.CommandContext(ctx, "bash", "-c", prelude+blk.code+save)
		cmd.Dir, cmd.Env = work, blockEnv
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("%s failed (%v):\n%s\n--- stdout ---\n%s\n--- stderr ---\n%s", name, err, blk.code, &stdout, &stderr)
		}
		if stdout.Len() == 0 {
			t.Errorf("%s printed nothing:\n%s\n--- stderr ---\n%s", name, blk.code, &stderr)
		}
		t.Logf("%s ran: %d bytes of output", name, stdout.Len())
		if strings.Contains(blk.code, "metrics?name=cpu_usage_ratio") && !strings.Contains(stdout.String(), `"labels":{"cpu":"total"},"points":[{`) {
			t.Errorf("%s: the CPU usage query returned no point right after make run:\n%s", name, &stdout)
		}
	}

	// What the examples did: the device enrolled with the join token and
	// the one approved with its pairing code are online, and the stream
	// said at once that it was open.
	ds := run.api.devices()
	online := 0
	for _, d := range ds {
		if d.Status == "online" {
			online++
		}
	}
	if len(ds) < 3 {
		t.Errorf("%d devices after the README's examples, want 3 (make run's, the joined and the paired): %+v", len(ds), ds)
	}
	vals := pairingFromLogs(t, bg)
	run.api.waitStatus(vals["NEW"], "online", "", 20*time.Second)
	for _, b := range bg {
		if strings.Contains(b.blk.code, "/events") && !strings.Contains(b.out.String(), "event stream open") {
			t.Errorf("the event stream example did not show the stream open:\n%s", b.out)
		}
	}
}

var pairingLogRE = regexp.MustCompile(`pairing_code=(\S+) device=(\S+)`)

// pairingFromLogs returns what a person reads off the pairing agent's log
// (the background example running alicia-agent --pair): CODE and NEW.
func pairingFromLogs(t *testing.T, bg []*background) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, b := range bg {
			if !strings.Contains(b.blk.code, "--pair") {
				continue
			}
			sc := bufio.NewScanner(strings.NewReader(b.out.String()))
			for sc.Scan() {
				if m := pairingLogRE.FindStringSubmatch(sc.Text()); m != nil {
					return map[string]string{"CODE": m[1], "NEW": m[2]}
				}
			}
		}
		time.Sleep(50 * time.Millisecond) // polling the agent's log
	}
	t.Fatal("no pairing code in the log of the example running alicia-agent --pair")
	return nil
}
