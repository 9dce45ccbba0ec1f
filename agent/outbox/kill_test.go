package outbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The kill tests re-execute the test binary as a child (TestKillChild with
// these variables set) that appends, and with killAck also acks, in a tight
// loop, printing what returned nil; the parent SIGKILLs it at a random
// moment and checks the file against what was printed.
const (
	killModeEnv = "OUTBOX_KILL_CHILD" // killAppend or killAck
	killPathEnv = "OUTBOX_KILL_PATH"
	killAppend  = "append"
	killAck     = "append+ack"

	killRounds     = 20
	killChildLimit = 30 * time.Second // a child the parent lost exits by itself
	killMaxBytes   = 1 << 30          // no drops: every loss would be a bug
)

// payload is the data of entry seq: a deterministic function of seq, 16 to
// 2063 bytes, so the parent can check every byte.
func payload(seq uint64) []byte {
	r := rand.New(rand.NewPCG(seq, 0x0b0c))
	b := make([]byte, 16+seq%2048)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// TestKillChild is the child side of TestKill9; it does nothing in a
// normal run.
func TestKillChild(t *testing.T) {
	mode := os.Getenv(killModeEnv)
	if mode == "" {
		t.Skip("the child process of TestKill9; runs only when TestKill9 starts it")
	}
	os.Exit(runKillChild(mode, os.Getenv(killPathEnv)))
}

// runKillChild appends (and acks) until it is killed. Each stdout line is
// one write of under PIPE_BUF bytes, so lines from both goroutines never
// interleave: "a <seq>" after Append returned nil, "b <seqs>" before an
// Ack, "k <seqs>" after it returned nil.
func runKillChild(mode, path string) int {
	say := func(format string, args ...any) { _, _ = fmt.Fprintf(os.Stdout, format+"\n", args...) }
	o, err := Open(Options{Path: path, MaxBytes: killMaxBytes})
	if err != nil {
		say("error open: %v", err)
		return 3
	}
	say("ready")
	failed := make(chan int, 2)
	if mode == killAck {
		go func() {
			var last uint64
			for {
				es, err := o.Pending(0, 16)
				if err != nil {
					say("error pending: %v", err)
					failed <- 5
					return
				}
				if len(es) == 0 {
					<-o.Wait(last)
					continue
				}
				last = es[len(es)-1].Seq
				var batch []string
				var seqs []uint64
				for _, e := range es {
					if rand.IntN(2) == 0 || (len(seqs) == 0 && e.Seq == last) {
						seqs = append(seqs, e.Seq)
						batch = append(batch, strconv.FormatUint(e.Seq, 10))
					}
				}
				say("b %s", strings.Join(batch, " "))
				if err := o.Ack(seqs...); err != nil {
					say("error ack: %v", err)
					failed <- 6
					return
				}
				say("k %s", strings.Join(batch, " "))
			}
		}()
	}
	go func() {
		for {
			want := o.Stats().LastSeq + 1
			seq, err := o.Append(payload(want))
			if err != nil {
				say("error append: %v", err)
				failed <- 4
				return
			}
			if seq != want {
				say("error append: seq %d, want %d", seq, want)
				failed <- 4
				return
			}
			say("a %d", seq)
		}
	}()
	select {
	case code := <-failed:
		return code
	case <-time.After(killChildLimit):
		say("error: not killed within %v", killChildLimit)
		return 7
	}
}

// childRun is what one child printed.
type childRun struct {
	appended []uint64 // "a" lines
	acked    []uint64 // seqs of "k" lines
	inflight []uint64 // a "b" line without its "k": the kill hit that Ack
	errLine  string   // an "error" line, if any
	killed   bool     // died of SIGKILL (as opposed to exiting)
	stderr   string   // the child's stderr
}

// runChild starts a child in mode on path, kills it killAfter after it is
// ready (or, with early, killAfter after it started, ready or not) and
// returns what it printed.
func runChild(t *testing.T, mode, path string, killAfter time.Duration, early bool) childRun {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killModeEnv+"="+mode, killPathEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	done := make(chan []string)
	go func() {
		var lines []string
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadString('\n')
			if err != nil { // io.EOF, possibly after a partial line: ignored
				done <- lines
				return
			}
			line = strings.TrimSuffix(line, "\n")
			if line == "ready" {
				close(ready)
				continue
			}
			lines = append(lines, line)
		}
	}()
	if !early {
		select {
		case <-ready:
		case <-time.After(10 * time.Second):
			t.Error("child not ready within 10s")
		}
	}
	time.Sleep(killAfter)  // the point of the test is a random moment
	_ = cmd.Process.Kill() // SIGKILL to this child's PID only
	lines := <-done
	waitErr := cmd.Wait()

	run := childRun{stderr: stderr.String()}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			run.killed = true
		}
	}
	var begun []uint64
	for _, line := range lines {
		kind, rest, _ := strings.Cut(line, " ")
		var seqs []uint64
		if kind != "error" {
			for _, f := range strings.Fields(rest) {
				n, err := strconv.ParseUint(f, 10, 64)
				if err != nil {
					t.Fatalf("child printed %q", line)
				}
				seqs = append(seqs, n)
			}
		}
		switch kind {
		case "a":
			run.appended = append(run.appended, seqs...)
		case "b":
			begun = seqs
		case "k":
			run.acked = append(run.acked, seqs...)
			begun = nil
		case "error":
			run.errLine = line
		default:
			t.Fatalf("child printed %q", line)
		}
	}
	run.inflight = begun
	return run
}

// TestKill9 SIGKILLs a child that appends (and, in the second variant,
// acks concurrently) at random moments, killRounds times on the same file,
// and checks after each kill that Open succeeds, no Append or Ack that
// returned nil is lost, every entry holds exactly its data, nothing else
// disappeared, an interrupted Ack is all or nothing, and the next Append
// continues the sequence. Every fifth round kills at a random moment from
// the child's start, so also during Open and the file's creation.
func TestKill9(t *testing.T) {
	if os.Getenv(killModeEnv) != "" {
		t.Skip("in the child")
	}
	if testing.Short() {
		t.Skip("kills child processes for a few seconds; skipped with -short")
	}
	for _, mode := range []string{killAppend, killAck} {
		t.Run(mode, func(t *testing.T) { testKill(t, mode) })
	}
}

func testKill(t *testing.T, mode string) {
	path := filepath.Join(t.TempDir(), "outbox.db")
	appended := map[uint64]bool{} // every seq whose Append returned nil
	acked := map[uint64]bool{}    // every seq whose Ack returned nil (or, in flight, took effect)
	var lastAppended uint64
	var epoch string
	var total, inflightKills, unprinted, afterCommit int
	for round := range killRounds {
		early := round%5 == 0
		killAfter := time.Duration(20+rand.IntN(181)) * time.Millisecond
		if early {
			killAfter = time.Duration(rand.IntN(60)) * time.Millisecond
		}
		run := runChild(t, mode, path, killAfter, early)
		if !run.killed || run.errLine != "" {
			t.Fatalf("round %d: the child did not die of SIGKILL or reported an error: %q\nstderr:\n%s", round, run.errLine, run.stderr)
		}
		for _, s := range run.appended {
			if appended[s] {
				t.Fatalf("round %d: seq %d returned twice", round, s)
			}
			appended[s] = true
			lastAppended = max(lastAppended, s)
		}
		for _, s := range run.acked {
			acked[s] = true
		}
		total += len(run.appended)

		o, err := Open(Options{Path: path, MaxBytes: killMaxBytes})
		if err != nil {
			t.Fatalf("round %d: Open after kill -9: %v", round, err)
		}
		if epoch == "" {
			epoch = o.Epoch()
		} else if o.Epoch() != epoch {
			t.Fatalf("round %d: epoch changed from %q to %q", round, epoch, o.Epoch())
		}
		es := all(t, o)
		st := o.Stats()
		present := map[uint64]bool{}
		for _, e := range es {
			present[e.Seq] = true
			if !bytes.Equal(e.Data, payload(e.Seq)) {
				t.Errorf("round %d: entry %d holds %d bytes that are not its data", round, e.Seq, len(e.Data))
			}
		}
		if st.LastSeq < lastAppended || st.LastSeq > lastAppended+1 {
			t.Errorf("round %d: LastSeq %d, last seq returned %d: want it or one more (the commit the kill cut before it was printed)", round, st.LastSeq, lastAppended)
		}
		if st.LastSeq == lastAppended+1 {
			unprinted++
		}
		if st.Dropped != 0 {
			t.Errorf("round %d: Dropped = %d with no bound reached", round, st.Dropped)
		}
		// An Ack the kill interrupted happened entirely or not at all.
		if len(run.inflight) > 0 {
			inflightKills++
			n := 0
			for _, s := range run.inflight {
				if present[s] {
					n++
				}
			}
			switch n {
			case 0:
				afterCommit++
				for _, s := range run.inflight {
					acked[s] = true
				}
			case len(run.inflight):
			default:
				t.Errorf("round %d: interrupted Ack(%v) half applied: %d of them remain", round, run.inflight, n)
			}
		}
		for s := uint64(1); s <= st.LastSeq; s++ {
			switch {
			case acked[s] && present[s]:
				t.Errorf("round %d: entry %d is back after its Ack returned nil", round, s)
			case !acked[s] && !present[s] && appended[s]:
				t.Errorf("round %d: entry %d is lost: its Append returned nil, it was never acked", round, s)
			case !acked[s] && !present[s]:
				t.Errorf("round %d: entry %d (≤ LastSeq %d) is missing and was never acked", round, s, st.LastSeq)
			}
		}
		if mode == killAppend && (len(es) != int(st.LastSeq) || (len(es) > 0 && es[0].Seq != 1)) {
			t.Errorf("round %d: %d entries for LastSeq %d: want 1..LastSeq, contiguous", round, len(es), st.LastSeq)
		}
		next := st.LastSeq + 1
		if seq, err := o.Append(payload(next)); err != nil || seq != next {
			t.Errorf("round %d: Append after reopen = %d, %v; want %d", round, seq, err, next)
		} else {
			appended[seq] = true
			lastAppended = seq
		}
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if total == 0 {
		t.Fatal("no child ever appended: the test proved nothing")
	}
	if mode == killAck && len(acked) == 0 {
		t.Fatal("no child ever acked: the ack variant proved nothing")
	}
	t.Logf("%d rounds: %d appends returned nil, %d acked; %d kills after a commit before its print; %d kills inside an Ack (%d after its commit)",
		killRounds, total, len(acked), unprinted, inflightKills, afterCommit)
	names, _ := filepath.Glob(path + ".new-*")
	t.Logf("leftovers of interrupted creations: %v", names)
}
