package upstream

import (
	"os"
	"path/filepath"
	"testing"
)

// EnvDir names the variable that points at the shared test data.
const EnvDir = "HITLESS_TESTDATA"

// Dir returns the shared test data directory, failing the test when it is
// missing: CI always has it, so its absence is a broken setup, not a skip.
func Dir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvDir); d != "" {
		return d
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "testdata")
			if _, err := os.Stat(d); err != nil {
				t.Fatalf("shared test data not found at %s; set %s", d, EnvDir)
			}
			return d
		}
		if filepath.Dir(dir) == dir {
			t.Fatalf("no go.mod above %s; set %s", wd, EnvDir)
		}
	}
}

// Path joins elems under Dir.
func Path(t testing.TB, elems ...string) string {
	return filepath.Join(append([]string{Dir(t)}, elems...)...)
}
