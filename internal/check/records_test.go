package check

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/kube/store"
)

// FuzzRecord: a stored checks run of any shape is decoded or refused;
// what decodes prints as a table and as JUnit XML that parses back.
func FuzzRecord(f *testing.F) {
	r := &Report{ID: "preflight-1", Kind: "preflight", Profile: "generic", Started: time.Unix(1, 0),
		Results: []Result{{ID: "nodes.ready", Title: "Nodes Ready", Status: Fail, Message: "a\nb", Objects: []string{"Node/n1"}, Node: "n1"}}}
	r.Summarize()
	seed, err := json.Marshal(r)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"results":[{"status":"Error","message":"\u0000]]>"}],"durationMs":-1}`))
	junit := filepath.Join(f.TempDir(), "junit.xml")
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := store.Compress(b)
		if err != nil {
			t.Fatal(err)
		}
		var rep Report
		if err := store.Unpack(z, &rep); err != nil {
			return
		}
		PrintTable(&bytes.Buffer{}, &rep, true)
		if err := WriteJUnit(junit, &rep); err != nil {
			t.Fatalf("JUnit of a decoded record: %v", err)
		}
		x, err := os.ReadFile(junit)
		if err != nil {
			t.Fatal(err)
		}
		var suite junitSuite
		if err := xml.Unmarshal(x, &suite); err != nil {
			t.Fatalf("the JUnit written does not parse: %v\n%s", err, x)
		}
	})
}
