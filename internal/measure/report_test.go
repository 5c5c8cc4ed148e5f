package measure

import (
	"bytes"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/journal"
	"github.com/hitless-dev/hitless/internal/kube/store"
	"github.com/hitless-dev/hitless/internal/measure/agent"
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
