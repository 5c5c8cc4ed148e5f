package measure

import (
	"bytes"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/measure/agent"
	"github.com/hitless-dev/hitless/internal/measure/probe"
)

// spans is an operation's node phases, as its journal gives them.
type spans []journal.Span

func (s spans) Spans(time.Time) []journal.Span { return s }

// FuzzProbeResult: an agent's published probe result of any shape is
// decoded or refused; what decodes makes a report whose summary adds up,
// whose windows are tied to steps, and that prints as a table and a page.
func FuzzProbeResult(f *testing.F) {
	f.Add([]byte(`{"session":"s","node":"n1","rate":100,"final":true,"paths":[{"from":"n1","to":"n2","kind":"udp","sent":300,"received":290,"lost":10,"longestOutageMs":100,
		"windows":[{"start":"2026-01-01T00:00:01Z","end":"2026-01-01T00:00:01.1Z","durationMs":100,"lost":10}]}]}`))
	f.Add([]byte(`{"paths":[{"sent":-5,"lost":7,"windows":[{"start":"0001-01-01T00:00:00Z","end":"9999-01-01T00:00:00Z"}]},null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		z, err := store.Compress(b)
		if err != nil {
			t.Fatal(err)
		}
		var res agent.ProbeResult
		if store.Unpack(z, &res) != nil {
			return
		}
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		l := &Live{id: "s", started: start, opts: Options{Rate: 100}}
		rep := l.report(map[string]*agent.ProbeResult{"n1": &res}, start.Add(10*time.Second))
		if rep.Summary.Paths != len(res.Paths) {
			t.Fatalf("%d paths, the summary says %d", len(res.Paths), rep.Summary.Paths)
		}
		end := start.Add(2 * time.Second)
		Attribute(rep, "upgrade-1", spans{{Node: "n2", Phase: "action", Start: start, End: end}})
		windows := 0
		for _, p := range rep.Paths {
			windows += len(p.Windows)
		}
		if len(rep.Windows) != windows {
			t.Fatalf("%d loss windows on the paths, %d in the report", windows, len(rep.Windows))
		}
		PrintTable(&bytes.Buffer{}, rep)
		if err := page.Execute(&bytes.Buffer{}, layout(rep)); err != nil {
			t.Fatalf("the page of a decoded result: %v", err)
		}
	})
}

// A window no step overlapped is tied to the last step before it, one on
// a node of the path first: a data plane that loses packets after its pod
// is Ready (BGP peers withdrawing routes) is still the step's doing.
func TestAttributeAfterSteps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	steps := spans{
		{Node: "n1", Phase: "action", Start: at(0), End: at(1)},
		{Node: "n2", Phase: "action", Start: at(2), End: at(3)},
		{Node: "n3", Phase: "action", Start: at(4), End: at(5)},
	}
	for _, tc := range []struct {
		name          string
		from, to      string
		start, end    float64
		node, printed string
		after, onPath bool
	}{
		{"overlapping a step on its path", "n2", "n4", 2.5, 2.8, "n2", "action of n2", false, true},
		{"after the last step, on the path of an earlier one", "n1", "n4", 6, 8, "n1", "after action of n1", true, true},
		{"after every step, on no step's path", "n4", "n5", 6, 8, "n3", "after action of n3 (not on this path)", true, false},
		{"before any step", "n1", "n2", -2, -1, "", "no step of op", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := &Report{Ended: at(10), Paths: []probe.Path{{From: tc.from, To: tc.to, Kind: "udp",
				Windows: []probe.Window{{Start: at(tc.start), End: at(tc.end)}}}}}
			Attribute(rep, "op", steps)
			a := rep.Windows[0]
			if a.Node != tc.node || a.After != tc.after || a.OnPath != tc.onPath || a.during("op") != tc.printed {
				t.Fatalf("window tied to %q (after %t, on path %t, %q); want %q (after %t, on path %t, %q)",
					a.Node, a.After, a.OnPath, a.during("op"), tc.node, tc.after, tc.onPath, tc.printed)
			}
		})
	}
}

// The last loss is the end of the latest window, now for one still open,
// or the start of the wait when there was none after it.
func TestLastLoss(t *testing.T) {
	since := time.Now().Add(-10 * time.Second)
	for _, tc := range []struct {
		name    string
		windows []probe.Window
		want    func(time.Time) bool
	}{
		{"no loss", nil, func(got time.Time) bool { return got.Equal(since) }},
		{"an earlier loss", []probe.Window{{End: since.Add(-time.Second)}}, func(got time.Time) bool { return got.Equal(since) }},
		{"a loss during the wait", []probe.Window{{End: since.Add(3 * time.Second)}}, func(got time.Time) bool { return got.Equal(since.Add(3 * time.Second)) }},
		{"a loss still going", []probe.Window{{End: since.Add(time.Second), Open: true}}, func(got time.Time) bool { return time.Since(got) < time.Second }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := lastLoss(&Report{Paths: []probe.Path{{Windows: tc.windows}}}, since)
			if !tc.want(got) {
				t.Fatalf("lastLoss = %s (since %s)", got, since)
			}
		})
	}
}

// The summary names the node a loss was at only when every path with loss
// has it at an end and every one of its paths to another agent lost.
func TestLossAt(t *testing.T) {
	path := func(from, to string, lost int64) probe.Path {
		return probe.Path{From: from, To: to, Kind: "udp", Sent: 100, Received: 100 - lost, Lost: lost}
	}
	mesh := func(lossy map[string]bool) []probe.Path {
		var out []probe.Path
		for _, from := range []string{"a", "b", "c"} {
			for _, to := range []string{"a", "b", "c", "apiserver"} {
				if from == to {
					continue
				}
				var lost int64
				if lossy[from+">"+to] {
					lost = 30
				}
				out = append(out, path(from, to, lost))
			}
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		lossy []string
		want  string
	}{
		{"no loss", nil, ""},
		{"every path of c", []string{"a>c", "b>c", "c>a", "c>b"}, "c"},
		{"every path of c and its API server path", []string{"a>c", "b>c", "c>a", "c>b", "c>apiserver"}, "c"},
		{"one path only: neither end lost all its paths", []string{"a>b"}, ""},
		{"c's paths but one", []string{"a>c", "b>c", "c>a"}, ""},
		{"c's paths and one elsewhere", []string{"a>c", "b>c", "c>a", "c>b", "a>b"}, ""},
		{"everything", []string{"a>b", "a>c", "b>a", "b>c", "c>a", "c>b"}, ""},
		{"an API server path only", []string{"a>apiserver"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lossy := map[string]bool{}
			for _, l := range tc.lossy {
				lossy[l] = true
			}
			s := summarize(mesh(lossy))
			if s.LossAt != tc.want {
				t.Errorf("loss at %q, want %q", s.LossAt, tc.want)
			}
			var b bytes.Buffer
			PrintTable(&b, &Report{Paths: mesh(lossy), Summary: s})
			if said := bytes.Contains(b.Bytes(), []byte("The loss was at node")); said != (tc.want != "") {
				t.Errorf("the table says where the loss was: %v, want %v\n%s", said, tc.want != "", b.String())
			}
		})
	}
	two := []probe.Path{path("a", "b", 10), path("b", "a", 10)}
	if got := summarize(two).LossAt; got != "" {
		t.Errorf("two agents that lost each other: loss at %q, want no node named", got)
	}
}

// A node whose agent follows its data-plane pod (the lab's model) is named
// a model in the table and on the page, and a node loaded past its CPUs
// is named loaded; a real data plane's report on idle nodes says nothing
// of the kind.
func TestModeledAndLoadedSaySo(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, modeled := range []bool{true, false} {
		l := &Live{id: "s", started: start, opts: Options{Rate: 100}}
		load := 0.5
		if modeled {
			load = 3.5
		}
		res := map[string]*agent.ProbeResult{
			"n1": {Node: "n1", Final: true, Modeled: modeled, MaxLoad: load, CPUs: 2, Paths: []probe.Path{{From: "n1", To: "n2", Kind: "udp", Sent: 10, Received: 10}}},
			"n2": {Node: "n2", Final: true, Modeled: modeled, Paths: []probe.Path{{From: "n2", To: "n1", Kind: "udp", Sent: 10, Received: 10}}},
		}
		rep := l.report(res, start.Add(time.Second))
		var table, html bytes.Buffer
		PrintTable(&table, rep)
		if err := page.Execute(&html, layout(rep)); err != nil {
			t.Fatal(err)
		}
		saysTable := bytes.Contains(table.Bytes(), []byte("MODEL: the data plane of n1, n2 is the lab's model"))
		saysPage := bytes.Contains(html.Bytes(), []byte("Model: the data plane of n1, n2 is the lab"))
		if saysTable != modeled || saysPage != modeled {
			t.Errorf("modeled %v: the table says so %v, the page %v\n%s", modeled, saysTable, saysPage, table.String())
		}
		loadedTable := bytes.Contains(table.Bytes(), []byte("LOADED: n1 (load 3.5 on 2 CPUs)"))
		loadedPage := bytes.Contains(html.Bytes(), []byte("Loaded: n1 (load 3.5 on 2 CPUs)"))
		if loadedTable != modeled || loadedPage != modeled {
			t.Errorf("load %.1f on 2 CPUs: the table says loaded %v, the page %v\n%s", load, loadedTable, loadedPage, table.String())
		}
	}
}
