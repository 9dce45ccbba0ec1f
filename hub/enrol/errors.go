package enrol

import "errors"

// The kinds of error the Service returns, for the caller to branch on.
var (
	// ErrInvalid: a field of the request is malformed or fails its check
	// (key, proof, name, token format).
	ErrInvalid = errors.New("invalid request")
	// ErrBadToken: the join token is unknown, expired or used up. The
	// detail does not tell these apart.
	ErrBadToken = errors.New("invalid join token")
	// ErrRefused: the request is well-formed but not allowed: a token of
	// another hub, a closed pairing window, a rejected or revoked device,
	// one no longer approved.
	ErrRefused = errors.New("refused")
	// ErrConflict: the device already has its credentials.
	ErrConflict = errors.New("already enrolled")
	// ErrTooMany: too many devices already wait for approval.
	ErrTooMany = errors.New("too many pending devices")
	// ErrNoBroker: no broker address is reachable from the agent's network
	// (the request's BrokerURLs is empty).
	ErrNoBroker = errors.New("no reachable broker")
	// ErrNoCA: the hub has no CA, so agents cannot verify it; pairing
	// needs one.
	ErrNoCA = errors.New("no CA")
	// ErrTokensUnavailable: the join tokens cannot be checked right now
	// (their store failed).
	ErrTokensUnavailable = errors.New("join tokens unavailable")
	// ErrBroker: the broker did not create the device's account.
	ErrBroker = errors.New("broker account not created")
	// ErrInternal: the hub itself failed (its store, its CA). The detail
	// says which step; the cause is for the hub's log, not for the agent.
	ErrInternal = errors.New("internal error")
)

// Error is every error the Service returns: a request it refused, a
// dependency that failed, or its own failure.
type Error struct {
	// Kind is one of the Err* sentinels above.
	Kind error
	// Detail says what is wrong and what to do, for the agent or the
	// administrator: it names the field at fault and contains no secret.
	Detail string
	// Err is the cause, if any, for the log: Detail does not repeat it.
	Err error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Detail
	}
	return e.Detail + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is e's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

func fail(kind error, detail string, cause error) *Error {
	return &Error{Kind: kind, Detail: detail, Err: cause}
}
