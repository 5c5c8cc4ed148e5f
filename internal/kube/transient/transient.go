package transient

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Is reports whether err is likely to go away if the call is retried.
func Is(err error) bool {
	if err == nil {
		return false
	}
	// The server answered, and said no: a 4xx other than a timeout or
	// too many requests is the same answer next time. A resource whose
	// type is no longer served (its CRD deleted) answers a plain-text 404
	// that client-go marks as an unexpected server response as well: not
	// found, not something to wait out.
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		if c := st.Status().Code; c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
			return false
		}
	}
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var netErr net.Error
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &netErr)
}

// Retry calls fn until it succeeds, fails for good, ctx ends or about a
// minute of transient failures has passed, and returns its last error.
func Retry(ctx context.Context, fn func() error) error {
	var last error
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.6, Jitter: 0.2, Steps: 14, Cap: 10 * time.Second}
	err := wait.ExponentialBackoffWithContext(ctx, backoff, func(context.Context) (bool, error) {
		last = fn()
		if last == nil {
			return true, nil
		}
		if !Is(last) {
			return false, last
		}
		return false, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// Poll runs f every interval until it is done, fails with an error that
// is not transient, or ctx ends.
func Poll(ctx context.Context, interval time.Duration, f func() (bool, error)) error {
	for {
		done, err := f()
		if err != nil && !Is(err) {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}
