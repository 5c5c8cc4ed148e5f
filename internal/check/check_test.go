package check

import (
	"bytes"
	"context"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	checks := []Check[int]{
		Func[int]{Name: "a.pass", Heading: "passes", Fn: func(_ context.Context, in int) Outcome { return Passed("got %d", in) }},
		Func[int]{Name: "b.slow", Heading: "overruns", Fn: func(ctx context.Context, _ int) Outcome {
			<-ctx.Done()
			time.Sleep(time.Hour) // ignores its context: the runner must not wait
			return Passed("never")
		}},
		Func[int]{Name: "c.panic", Heading: "panics", Fn: func(context.Context, int) Outcome { panic("boom") }},
		Func[int]{Name: "d.fail", Heading: "fails", Fn: func(context.Context, int) Outcome {
			return Outcome{Status: Fail, Message: "bad", Objects: []string{"Pod/ns/b", "Pod/ns/a"}}
		}},
	}
	sev := map[string]Severity{"a.pass": Hard, "b.slow": Soft, "c.panic": Hard, "d.fail": Soft}
	res := Run(context.Background(), checks, 7, func(id string) Severity { return sev[id] }, 50*time.Millisecond)
	tests := []struct {
		i       int
		id      string
		status  Status
		msg     string
		sev     Severity
		objects string
	}{
		{0, "a.pass", Pass, "got 7", Hard, ""},
		{1, "b.slow", Error, "did not finish within 50ms", Soft, ""},
		{2, "c.panic", Error, "check panicked: boom", Hard, ""},
		{3, "d.fail", Fail, "bad", Soft, "Pod/ns/a,Pod/ns/b"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			r := res[tt.i]
			if r.ID != tt.id || r.Status != tt.status || r.Message != tt.msg || r.Severity != tt.sev || strings.Join(r.Objects, ",") != tt.objects {
				t.Fatalf("result %+v, want id %s status %s message %q severity %s objects %q", r, tt.id, tt.status, tt.msg, tt.sev, tt.objects)
			}
		})
	}
	rep := &Report{Kind: "preflight", Profile: "generic", Results: res}
	rep.Summarize()
	if rep.Summary.OK || rep.Summary.Blocking != 1 || rep.Summary.Error != 2 || rep.Summary.Fail != 1 || rep.Summary.Pass != 1 {
		t.Fatalf("summary %+v: want one blocking (the hard panic), 2 errors, 1 fail, 1 pass", rep.Summary)
	}
	if rep.Results[0].ID != "c.panic" {
		t.Fatalf("first result %s, want the blocking c.panic first", rep.Results[0].ID)
	}
}

func TestJUnit(t *testing.T) {
	rep := &Report{Kind: "preflight", Profile: "cn2", Results: []Result{
		{ID: "drain.pdb", Title: "PDBs", Status: Fail, Severity: Hard, Message: "blocks", Objects: []string{"PodDisruptionBudget/a/b"}},
		{ID: "nodes.cordoned", Title: "cordoned", Status: Warn, Severity: Soft, Message: "one cordoned"},
		{ID: "node.clock", Node: "w1", Title: "clock", Status: Error, Severity: Soft, Message: "adjtimex"},
		{ID: "versions.matrix", Title: "matrix", Status: Skip, Severity: Hard, Message: "no matrix"},
	}}
	rep.Summarize()
	path := filepath.Join(t.TempDir(), "out.xml")
	if err := WriteJUnit(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got junitSuites
	if err := xml.Unmarshal(b, &got); err != nil {
		t.Fatalf("JUnit does not parse: %v\n%s", err, b)
	}
	s := got.Suites[0]
	if s.Tests != 4 || s.Failures != 1 || s.Errors != 1 || s.Skipped != 1 {
		t.Fatalf("suite counts tests %d failures %d errors %d skipped %d, want 4 1 1 1", s.Tests, s.Failures, s.Errors, s.Skipped)
	}
	if !strings.Contains(string(b), "PodDisruptionBudget/a/b") || !strings.Contains(string(b), "node.clock [w1]") {
		t.Fatalf("JUnit lacks the objects or the node:\n%s", b)
	}
}

func TestPrintTableCollapsesNodes(t *testing.T) {
	rep := &Report{ID: "r", Kind: "preflight", Profile: "generic"}
	for _, n := range []string{"w1", "w2", "w3"} {
		rep.Results = append(rep.Results, Result{ID: "node.clock", Node: n, Status: Warn, Severity: Soft, Message: "unsynchronised"})
	}
	rep.Results = append(rep.Results, Result{ID: "node.resolv-conf", Node: "w2", Status: Fail, Severity: Hard, Message: "loopback only"})
	rep.Summarize()
	var buf bytes.Buffer
	PrintTable(&buf, rep, false)
	out := buf.String()
	for _, want := range []string{"3 nodes", "Node/w1", "Node/w3", "w2", "loopback only", "NOT OK: 1 hard check(s) failed"} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "unsynchronised") != 1 {
		t.Fatalf("the three identical node results are not one row:\n%s", out)
	}
}
