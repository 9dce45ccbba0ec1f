package enrol

import (
	"context"
	"errors"
	"log/slog"
	"testing"
)

// retry returns the stop, not the failure of the attempt during which the
// agent was stopped (the hub answered 503 just as the agent stopped).
func TestRetryStoppedDuringAnAttempt(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := retry(ctx, log, "enrolment", func() (int, error) {
		calls++
		cancel() // the stop arrives while the attempt is failing
		return 0, errors.New("503 Service Unavailable: down for maintenance")
	})
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Errorf("retry = %v after %d attempts, want context.Canceled after 1", err, calls)
	}
	// A permanent failure is returned as it is, stopped or not.
	perm := errPermanent{errors.New("403: join token used up")}
	if _, err := retry(ctx, log, "enrolment", func() (int, error) { return 0, perm }); !errors.As(err, new(errPermanent)) {
		t.Errorf("permanent failure: %v", err)
	}
}
