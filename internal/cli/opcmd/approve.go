package opcmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/hitless-dev/hitless/internal/engine/operation"
)

// Terminal answers an operation's questions on the command line: the
// canary question with --yes or a "y" on In, the operator's steps with
// Enter. One question at a time; one reader for the whole run, so no
// read-ahead is lost between questions.
type Terminal struct {
	// Yes approves the canary question without asking.
	Yes bool
	out io.Writer
	in  *bufio.Reader
	mu  sync.Mutex
}

// NewTerminal asks on out and reads the answers from in.
func NewTerminal(in io.Reader, out io.Writer, yes bool) *Terminal {
	return &Terminal{Yes: yes, out: out, in: bufio.NewReader(in)}
}

// Approve implements operation.Approver.
func (t *Terminal) Approve(ctx context.Context, q operation.Question) error {
	if q.Kind == operation.AskCanary && t.Yes {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if q.Kind == operation.AskCanary {
		_, _ = fmt.Fprintf(t.out, "%s [y/N] ", q.Text)
		answer, err := readLine(ctx, t.in)
		if err != nil || !strings.HasPrefix(strings.ToLower(strings.TrimSpace(answer)), "y") {
			return errors.New("not approved (add --yes to skip the question)")
		}
		return nil
	}
	_, _ = fmt.Fprintf(t.out, "%s, then press Enter: ", q.Text)
	if _, err := readLine(ctx, t.in); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	return nil
}

// readLine reads one line, giving up when ctx ends.
func readLine(ctx context.Context, in *bufio.Reader) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := in.ReadString('\n')
		ch <- result{s, err}
	}()
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.err != nil && res.s == "" {
			return "", res.err
		}
		return res.s, nil
	}
}
