package upstream

import (
	"fmt"
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
	d, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Find returns the shared test data directory: HITLESS_TESTDATA, or
// ../shared/testdata beside the module that holds the working directory.
func Find() (string, error) {
	if d := os.Getenv(EnvDir); d != "" {
		return d, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			d := filepath.Join(dir, "..", "shared", "testdata")
			if _, err := os.Stat(d); err != nil {
				return "", fmt.Errorf("shared test data not found at %s; set %s", d, EnvDir)
			}
			return d, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("no go.mod above %s; set %s", wd, EnvDir)
		}
	}
}

// Path joins elems under Dir.
func Path(t testing.TB, elems ...string) string {
	return filepath.Join(append([]string{Dir(t)}, elems...)...)
}
