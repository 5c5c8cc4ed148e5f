package check

import (
	"bytes"
	"compress/gzip"
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
	packed, err := store.Pack(r)
	if err != nil {
		f.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(packed))
	if err != nil {
		f.Fatal(err)
	}
	var plain bytes.Buffer
	if _, err := plain.ReadFrom(zr); err != nil {
		f.Fatal(err)
	}
	f.Add(plain.Bytes())
	f.Add([]byte(`{"results":[{"status":"Error","message":"\u0000]]>"}],"durationMs":-1}`))
	junit := filepath.Join(f.TempDir(), "junit.xml")
	f.Fuzz(func(t *testing.T, b []byte) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write(b)
		_ = zw.Close()
		var rep Report
		if err := store.Unpack(buf.Bytes(), &rep); err != nil {
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
