package opcmd

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/hitless-dev/hitless/internal/engine/roll"
)

func TestProgressTracksNodesInFlight(t *testing.T) {
	tests := []struct {
		name       string
		live       bool
		wantStatus bool
	}{
		{"plain lines off a terminal", false, false},
		{"live status line on a terminal", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := &Progress{w: &buf, live: tt.live, inflight: map[string]flight{}, stop: make(chan struct{})}
			now := time.Now()
			p.Event(roll.Event{Time: now, Node: "w1", Phase: roll.PhaseCordon})
			p.Event(roll.Event{Time: now, Node: "w2", Phase: roll.PhaseDrain, Batch: 1})
			p.Event(roll.Event{Time: now, Node: "w1", Phase: roll.PhaseDone})
			p.Event(roll.Event{Time: now, Node: "w3", Phase: roll.PhaseFailed, Message: "drain timed out"})
			p.Close()
			out := buf.String()
			for _, want := range []string{"w1", "cordon", "w2", "drain", "drain timed out"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			if got := strings.Contains(out, "done 1 · failed 1 · in flight: w2 drain"); got != tt.wantStatus {
				t.Errorf("status line present = %v, want %v:\n%q", got, tt.wantStatus, out)
			}
			if !tt.live && strings.Contains(out, "\033[") {
				t.Errorf("escape codes off a terminal:\n%q", out)
			}
		})
	}
}
