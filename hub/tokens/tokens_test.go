package tokens_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicia-home/alicia/hub/tokens"
	"github.com/alicia-home/alicia/internal/store"
	"github.com/alicia-home/alicia/internal/testkit"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// openDB opens a real store in dir; t.Cleanup closes it.
func openDB(t *testing.T, dir string) *store.DB {
	t.Helper()
	// MinFreeBytes: -1 so that a nearly full /tmp does not fail the tests.
	db, err := store.Open(store.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func newTokens(t *testing.T) (*tokens.Tokens, *store.DB, *testkit.Clock) {
	t.Helper()
	clk := testkit.NewClock(t0)
	db := openDB(t, t.TempDir())
	return tokens.Open(db, tokens.Config{Now: clk.Now}), db, clk
}

func readToken(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestEnsureAdmin(t *testing.T) {
	tk, _, _ := newTokens(t)
	path := filepath.Join(t.TempDir(), "admin.token")

	created, err := tk.EnsureAdmin(path)
	if err != nil || !created {
		t.Fatalf("first EnsureAdmin = %v, %v; want true, nil", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode(); mode != 0o600 {
		t.Errorf("admin token file mode %v, want -rw-------", mode)
	}
	tok := readToken(t, path)
	if !strings.HasPrefix(tok, tokens.AdminPrefix) || len(tok) < len(tokens.AdminPrefix)+32 {
		t.Fatalf("admin token %q: want prefix %s and at least 32 random characters", tok, tokens.AdminPrefix)
	}
	before, _ := os.ReadFile(path)

	created, err = tk.EnsureAdmin(path)
	if err != nil || created {
		t.Fatalf("second EnsureAdmin = %v, %v; want false, nil", created, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("second EnsureAdmin changed the file: %q → %q", before, after)
	}

	for _, c := range []struct {
		name, token string
		want        bool
	}{
		{"right", tok, true},
		{"wrong", tokens.AdminPrefix + strings.Repeat("A", 43), false},
		{"one character off", tok[:len(tok)-1] + string(tok[len(tok)-1]^1), false},
		{"empty", "", false},
		{"prefix only", tokens.AdminPrefix, false},
		{"without prefix", strings.TrimPrefix(tok, tokens.AdminPrefix), false},
		{"with newline", tok + "\n", false},
		{"join prefix", tokens.JoinPrefix + strings.TrimPrefix(tok, tokens.AdminPrefix), false},
	} {
		if got := tk.CheckAdmin(c.token); got != c.want {
			t.Errorf("CheckAdmin(%s) = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEnsureAdminDistinctTokens(t *testing.T) {
	tk1, _, _ := newTokens(t)
	tk2, _, _ := newTokens(t)
	p1 := filepath.Join(t.TempDir(), "admin.token")
	p2 := filepath.Join(t.TempDir(), "admin.token")
	if _, err := tk1.EnsureAdmin(p1); err != nil {
		t.Fatal(err)
	}
	if _, err := tk2.EnsureAdmin(p2); err != nil {
		t.Fatal(err)
	}
	a, b := readToken(t, p1), readToken(t, p2)
	if a == b {
		t.Fatal("two hubs got the same admin token")
	}
	if tk1.CheckAdmin(b) || tk2.CheckAdmin(a) {
		t.Error("one hub accepts the other's admin token")
	}
}

func TestEnsureAdminReadoptsFileAfterStoreReset(t *testing.T) {
	dataDir := t.TempDir()
	path := filepath.Join(t.TempDir(), "admin.token")
	db := openDB(t, filepath.Join(dataDir, "db1"))
	if _, err := tokens.Open(db, tokens.Config{}).EnsureAdmin(path); err != nil {
		t.Fatal(err)
	}
	tok := readToken(t, path)
	before, _ := os.ReadFile(path)

	// A new, empty store (the old one was lost or reset).
	tk := tokens.Open(openDB(t, filepath.Join(dataDir, "db2")), tokens.Config{})
	if tk.CheckAdmin(tok) {
		t.Fatal("a fresh store accepts the token before EnsureAdmin")
	}
	created, err := tk.EnsureAdmin(path)
	if err != nil || created {
		t.Fatalf("EnsureAdmin with an existing file = %v, %v; want false, nil", created, err)
	}
	if !tk.CheckAdmin(tok) {
		t.Error("the file's token is not accepted after EnsureAdmin re-adopted it")
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Errorf("EnsureAdmin rewrote the file: %q → %q", before, after)
	}
}

func TestEnsureAdminGarbageFile(t *testing.T) {
	for _, content := range []string{"garbage\n", "", "\x00\x01\x02", "alicia_join_abc"} {
		tk, _, _ := newTokens(t)
		path := filepath.Join(t.TempDir(), "admin.token")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		created, err := tk.EnsureAdmin(path)
		if err == nil || created {
			t.Fatalf("EnsureAdmin on a file holding %q = %v, %v; want an error", content, created, err)
		}
		if msg := err.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, tokens.AdminPrefix) {
			t.Errorf("error %q should name the file and the expected prefix", msg)
		}
		if b, _ := os.ReadFile(path); string(b) != content {
			t.Errorf("EnsureAdmin overwrote a file it could not read: %q", b)
		}
		if tk.CheckAdmin(strings.TrimSpace(content)) {
			t.Errorf("CheckAdmin accepts the garbage %q", content)
		}
	}
}

func TestEnsureAdminUnwritableDir(t *testing.T) {
	tk, _, _ := newTokens(t)
	path := filepath.Join(t.TempDir(), "missing-dir", "admin.token")
	if _, err := tk.EnsureAdmin(path); err == nil {
		t.Fatal("EnsureAdmin succeeded without a directory to write the file to")
	}
	// No hash was stored for a token nobody could read: a retry (once the
	// directory exists) creates one.
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	created, err := tk.EnsureAdmin(path)
	if err != nil || !created {
		t.Fatalf("EnsureAdmin after the directory appeared = %v, %v; want true, nil", created, err)
	}
	if !tk.CheckAdmin(readToken(t, path)) {
		t.Error("the token written on retry is not accepted")
	}
}

// TestStoreHoldsOnlyHashes scans the token keyspace raw: no stored key or
// value may contain a clear token, or even its random part.
func TestStoreHoldsOnlyHashes(t *testing.T) {
	tk, db, _ := newTokens(t)
	path := filepath.Join(t.TempDir(), "admin.token")
	if _, err := tk.EnsureAdmin(path); err != nil {
		t.Fatal(err)
	}
	secrets := []string{readToken(t, path)}
	for range 3 {
		tok, _, err := tk.CreateJoin(5, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, tok)
	}
	// A partly used token is rewritten; check that form too.
	if err := tk.ConsumeJoin(secrets[1]); err != nil {
		t.Fatal(err)
	}

	n := 0
	err := db.Keyspace("token").Scan(func(key string, val []byte) error {
		n++
		for _, s := range secrets {
			random := strings.TrimPrefix(strings.TrimPrefix(s, tokens.AdminPrefix), tokens.JoinPrefix)
			if strings.Contains(key, random) || bytes.Contains(val, []byte(random)) {
				t.Errorf("stored entry %q = %q contains the clear token %q", key, val, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != len(secrets) {
		t.Errorf("scanned %d stored tokens, want %d (the test must see them to check them)", n, len(secrets))
	}
}

func TestCreateJoinBounds(t *testing.T) {
	tk, _, _ := newTokens(t)
	for _, c := range []struct {
		uses    int
		ttl     time.Duration
		wantErr bool
	}{
		{1, time.Hour, false},
		{tokens.MaxJoinUses, time.Hour, false},
		{1, time.Nanosecond, false},
		{1, tokens.MaxJoinTTL, false},
		{0, time.Hour, true},
		{-1, time.Hour, true},
		{tokens.MaxJoinUses + 1, time.Hour, true},
		{1, 0, true},
		{1, -time.Hour, true},
		{1, tokens.MaxJoinTTL + time.Nanosecond, true},
	} {
		tok, j, err := tk.CreateJoin(c.uses, c.ttl)
		if c.wantErr {
			if err == nil || tok != "" {
				t.Errorf("CreateJoin(%d, %s) = %q, %v; want an error", c.uses, c.ttl, tok, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("CreateJoin(%d, %s): %v", c.uses, c.ttl, err)
			continue
		}
		if !strings.HasPrefix(tok, tokens.JoinPrefix) {
			t.Errorf("join token %q lacks the prefix %s", tok, tokens.JoinPrefix)
		}
		if j.UsesLeft != c.uses || !j.CreatedAt.Equal(t0) || !j.ExpiresAt.Equal(t0.Add(c.ttl)) {
			t.Errorf("CreateJoin(%d, %s) stored %+v", c.uses, c.ttl, j)
		}
		if strings.Contains(j.Hash, strings.TrimPrefix(tok, tokens.JoinPrefix)) {
			t.Errorf("the stored form holds the clear token")
		}
	}
}

func TestConsumeJoin(t *testing.T) {
	t.Run("uses", func(t *testing.T) {
		tk, _, _ := newTokens(t)
		tok, _, err := tk.CreateJoin(2, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := tk.ConsumeJoin(tok); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		for i := range 2 {
			err := tk.ConsumeJoin(tok)
			if !errors.Is(err, tokens.ErrUsedUp) && !errors.Is(err, tokens.ErrInvalid) {
				t.Fatalf("use %d of a 2-use token = %v, want ErrUsedUp or ErrInvalid", i+3, err)
			}
		}
	})

	t.Run("tokens are independent", func(t *testing.T) {
		tk, _, _ := newTokens(t)
		a, _, _ := tk.CreateJoin(1, time.Hour)
		b, _, _ := tk.CreateJoin(1, time.Hour)
		if a == b {
			t.Fatal("two join tokens are equal")
		}
		if err := tk.ConsumeJoin(a); err != nil {
			t.Fatal(err)
		}
		if err := tk.ConsumeJoin(b); err != nil {
			t.Fatalf("using one token used up another: %v", err)
		}
	})

	t.Run("expiry", func(t *testing.T) {
		tk, _, clk := newTokens(t)
		tok, _, err := tk.CreateJoin(5, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		clk.Set(t0.Add(time.Hour - time.Nanosecond))
		if err := tk.ConsumeJoin(tok); err != nil {
			t.Fatalf("use just before expiry: %v", err)
		}
		clk.Set(t0.Add(time.Hour))
		if err := tk.ConsumeJoin(tok); !errors.Is(err, tokens.ErrExpired) {
			t.Fatalf("use at expiry = %v, want ErrExpired", err)
		}
		// An expired token is gone for good, even if the clock steps back.
		clk.Set(t0)
		err = tk.ConsumeJoin(tok)
		if !errors.Is(err, tokens.ErrExpired) && !errors.Is(err, tokens.ErrInvalid) {
			t.Fatalf("use after expiry = %v, want ErrExpired or ErrInvalid", err)
		}
	})

	t.Run("invalid", func(t *testing.T) {
		tk, _, _ := newTokens(t)
		tok, _, err := tk.CreateJoin(5, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		random := strings.TrimPrefix(tok, tokens.JoinPrefix)
		for _, bad := range []string{
			"", random, tokens.AdminPrefix + random, tokens.JoinPrefix,
			tokens.JoinPrefix + "unknown", tok + "x", " " + tok,
		} {
			if err := tk.ConsumeJoin(bad); !errors.Is(err, tokens.ErrInvalid) {
				t.Errorf("ConsumeJoin(%q) = %v, want ErrInvalid", bad, err)
			}
		}
		if err := tk.ConsumeJoin(tok); err != nil {
			t.Errorf("the real token was harmed by invalid attempts: %v", err)
		}
	})

	t.Run("concurrent uses never exceed the limit", func(t *testing.T) {
		tk, _, _ := newTokens(t)
		const uses, tries = 3, 12
		tok, _, err := tk.CreateJoin(uses, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg sync.WaitGroup
			mu sync.Mutex
			ok int
		)
		for range tries {
			wg.Go(func() {
				if tk.ConsumeJoin(tok) == nil {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if ok != uses {
			t.Errorf("%d of %d concurrent uses succeeded, want %d", ok, tries, uses)
		}
	})
}

func TestJoinTokensSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	tok, _, err := tokens.Open(db, tokens.Config{}).CreateJoin(2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := tokens.Open(db, tokens.Config{}).ConsumeJoin(tok); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	tk := tokens.Open(openDB(t, dir), tokens.Config{})
	if err := tk.ConsumeJoin(tok); err != nil {
		t.Fatalf("last use after reopen: %v", err)
	}
	if err := tk.ConsumeJoin(tok); err == nil {
		t.Fatal("a used-up token worked after reopen")
	}
}

func TestCheckJoin(t *testing.T) {
	tk, _, clk := newTokens(t)
	tok, _, err := tk.CreateJoin(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := tk.CheckJoin(tok); err != nil {
			t.Fatalf("CheckJoin of a fresh token: %v", err)
		}
	}
	if err := tk.ConsumeJoin(tok); err != nil {
		t.Fatalf("CheckJoin used the token up: %v", err)
	}
	if err := tk.CheckJoin(tok); !errors.Is(err, tokens.ErrUsedUp) && !errors.Is(err, tokens.ErrInvalid) {
		t.Errorf("CheckJoin of a used-up token = %v, want ErrUsedUp or ErrInvalid", err)
	}
	for _, bad := range []string{"", "alicia_join_nope", tokens.AdminPrefix + "x"} {
		if err := tk.CheckJoin(bad); !errors.Is(err, tokens.ErrInvalid) {
			t.Errorf("CheckJoin(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	tok, _, err = tk.CreateJoin(1, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clk.Set(t0.Add(time.Hour))
	if err := tk.CheckJoin(tok); !errors.Is(err, tokens.ErrExpired) {
		t.Errorf("CheckJoin at expiry = %v, want ErrExpired", err)
	}
}

// TestCheckAdminFile: at start the hub learns whether admin.token still
// holds the working token, and why not.
func TestCheckAdminFile(t *testing.T) {
	for _, c := range []struct {
		name    string
		content func(tok string) *string // nil: no file
		wantErr string                   // "" for no error
	}{
		{"the working token", func(tok string) *string { s := tok + "\n"; return &s }, ""},
		{"without newline", func(tok string) *string { return &tok }, ""},
		{"missing", func(string) *string { return nil }, "is missing"},
		{"empty", func(string) *string { s := ""; return &s }, "is empty"},
		{"blank", func(string) *string { s := " \n"; return &s }, "is empty"},
		{"garbled", func(string) *string { s := "\x00\x17garbage"; return &s }, "does not hold an admin token"},
		{"a join token", func(string) *string { s := tokens.JoinPrefix + "abc"; return &s }, "does not hold an admin token"},
		{"another admin token", func(string) *string { s := tokens.AdminPrefix + strings.Repeat("A", 43); return &s }, "holds another token"},
		{"cut short", func(tok string) *string { s := tok[:len(tok)-5]; return &s }, "holds another token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tk, _, _ := newTokens(t)
			path := filepath.Join(t.TempDir(), "admin.token")
			if _, err := tk.EnsureAdmin(path); err != nil {
				t.Fatal(err)
			}
			tok := readToken(t, path)
			if content := c.content(tok); content == nil {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(*content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := tk.CheckAdminFile(path)
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("CheckAdminFile = %v, want nil", err)
			case c.wantErr != "" && (!errors.Is(err, tokens.ErrAdminFile) || !strings.Contains(err.Error(), c.wantErr) || !strings.Contains(err.Error(), path)):
				t.Fatalf("CheckAdminFile = %v, want an error wrapping ErrAdminFile, naming %s and saying %q", err, path, c.wantErr)
			}
		})
	}
}

// TestRotateAdmin: a rotation replaces a lost or leaked token: the new file
// (0600) holds the only working token.
func TestRotateAdmin(t *testing.T) {
	for _, lose := range []string{"kept", "deleted", "emptied"} {
		t.Run(lose, func(t *testing.T) {
			tk, _, _ := newTokens(t)
			path := filepath.Join(t.TempDir(), "admin.token")
			if _, err := tk.EnsureAdmin(path); err != nil {
				t.Fatal(err)
			}
			old := readToken(t, path)
			switch lose {
			case "deleted":
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			case "emptied":
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := tk.RotateAdmin(path); err != nil {
				t.Fatalf("RotateAdmin: %v", err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if mode := fi.Mode(); mode != 0o600 {
				t.Errorf("rotated token file mode %v, want -rw-------", mode)
			}
			tok := readToken(t, path)
			if tok == old || !strings.HasPrefix(tok, tokens.AdminPrefix) {
				t.Fatalf("rotated token %q (old %q)", tok, old)
			}
			if !tk.CheckAdmin(tok) || tk.CheckAdmin(old) {
				t.Errorf("after rotation: new token accepted %v, old token accepted %v; want true, false", tk.CheckAdmin(tok), tk.CheckAdmin(old))
			}
			if err := tk.CheckAdminFile(path); err != nil {
				t.Errorf("CheckAdminFile after rotation: %v", err)
			}
			if created, err := tk.EnsureAdmin(path); err != nil || created {
				t.Errorf("EnsureAdmin after rotation = %v, %v; want false, nil", created, err)
			}
		})
	}
}
