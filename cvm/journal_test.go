package cvm

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJournalSaveLoadRoundTrip(t *testing.T) {
	store := JournalStore{Dir: filepath.Join(t.TempDir(), "deployments")}
	path := store.Path("http://127.0.0.1:1/api/v1", "my-app")
	j := &Journal{Name: "my-app", Fingerprint: "f1", Provision: &ProvisionStep{ComposeHash: "ab", OnChain: true}}
	if err := store.Save(path, j); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode = %v, want 0600", st.Mode().Perm())
	}
	got, err := store.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Provision == nil || got.Provision.ComposeHash != "ab" || got.Version != JournalVersion {
		t.Fatalf("loaded %+v", got)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temp files left behind: %v", entries)
	}
}

func TestJournalPathSeparatesPrefixesAndSanitisesNames(t *testing.T) {
	store := JournalStore{Dir: "/x"}
	a := store.Path("https://a/api/v1", "app")
	b := store.Path("https://b/api/v1", "app")
	if a == b {
		t.Fatal("two API prefixes share a journal")
	}
	if p := store.Path("https://a", "../../etc/passwd"); filepath.Dir(p) != "/x" || strings.Contains(filepath.Base(p), "/") {
		t.Fatalf("name escapes the journal folder: %s", p)
	}
}

func TestJournalLoadMissingAndDamaged(t *testing.T) {
	store := JournalStore{Dir: t.TempDir()}
	if j, err := store.Load(filepath.Join(store.Dir, "none.json")); j != nil || err != nil {
		t.Fatalf("missing journal: %v, %v", j, err)
	}
	bad := filepath.Join(store.Dir, "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o600)
	if _, err := store.Load(bad); err == nil || !strings.Contains(err.Error(), "--fresh") {
		t.Fatalf("damaged journal error = %v, want a hint about --fresh", err)
	}
}

// Journals and provision files are read by people when something needs
// fixing by hand: compose text in them stays as written ("&&", "<"),
// not \u0026 escapes.
func TestFilesAreNotHTMLEscaped(t *testing.T) {
	dir := t.TempDir()
	s := JournalStore{Dir: dir}
	path := s.Path("http://127.0.0.1/api/v1", "escape-app")
	j := &Journal{Version: JournalVersion, Name: "a && b < c > d"}
	if err := s.Save(path, j); err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(dir, "p.json")
	if err := SaveProvisionFile(pf, &ProvisionFile{Name: "x && y <z>", Provision: &ProvisionStep{}}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, pf} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(`\u00`)) || !bytes.Contains(data, []byte("&& ")) {
			t.Errorf("%s is HTML-escaped:\n%s", f, data)
		}
	}
	back, err := s.Load(path)
	if err != nil || back.Name != j.Name {
		t.Fatalf("load: %v %q", err, back.Name)
	}
}
