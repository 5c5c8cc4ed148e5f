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

// The journaled command line never holds a token, a password or a Helm
// value given on the command line; everything else, flags named like the
// secret ones included, is kept as given, and the line splits back.
func TestJournalLineRedactsSecrets(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"nothing secret", []string{"upgrade", "-f", "v2/", "--name", "cni"}, "upgrade -f v2/ --name cni"},
		{"token after the flag", []string{"--token", "s3cret", "roll", "--batch", "1"}, "'--token=(redacted)' roll --batch 1"},
		{"token inline", []string{"--token=s3cret", "roll"}, "'--token=(redacted)' roll"},
		{"password", []string{"--password", "hunter2", "roll"}, "'--password=(redacted)' roll"},
		{"helm values keep their paths", []string{"install", "-f", "c.tgz", "--set", "auth.key=abc,debug.enabled=true"}, "install -f c.tgz '--set=auth.key=(redacted),debug.enabled=(redacted)'"},
		{"an escaped comma stays hidden", []string{"install", "--set-string", `a=x\,y=z`}, "install '--set-string=a=(redacted)'"},
		{"a value without a path", []string{"install", "--set-json", "[1]"}, "install '--set-json=(redacted)'"},
		{"other flags starting with set", []string{"roll", "--set-node-label", "a=b"}, "roll --set-node-label a=b"},
		{"a flag at the end without value", []string{"install", "--set"}, "install --set"},
		{"after --", []string{"cluster", "--", "--token", "x"}, "cluster -- --token x"}, // arguments, not flags
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := JournalLine(tc.args)
			if got != tc.want {
				t.Fatalf("JournalLine(%q) = %s, want %s", tc.args, got, tc.want)
			}
			for _, secret := range []string{"s3cret", "hunter2", "abc", "=true", "x\\,y", "=z"} {
				if strings.Contains(got, secret) {
					t.Errorf("%s shows %q", got, secret)
				}
			}
			if _, err := SplitCommand(got); err != nil {
				t.Errorf("SplitCommand(%s): %v", got, err)
			}
		})
	}
}
