package exitcode

import (
	"errors"
	"fmt"
	"testing"
)

func TestOf(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, OK},
		{"plain error fails", base, Failed},
		{"bad input", BadInput(base), Usage},
		{"wrapped bad input keeps its code", fmt.Errorf("reading flags: %w", BadInput(base)), Usage},
		{"lock held", LockHeld(base), Locked},
		{"nil stays nil", BadInput(nil), OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(tt.err); got != tt.want {
				t.Errorf("Of(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
	if !errors.Is(fmt.Errorf("x: %w", BadInput(base)), base) {
		t.Error("BadInput must keep the cause in the chain")
	}
}
