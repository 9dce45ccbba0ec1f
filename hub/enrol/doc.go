// Package enrol gives agents their credentials: enrolment with a join
// token, and pairing (ask during the pairing window, wait for approval,
// collect once). Only the hub's composition root (hub/hubd), which wires
// it, and hub/api, which serves it, may import it.
//
// Each request is a saga of steps, each undone if a later one fails:
//
//	enrol:   check the proof → check the token (not used yet) → refuse a
//	         known key → issue the certificate → create the broker account
//	         → save the device → use up the token
//	collect: (approved device, no credentials yet) issue the certificate →
//	         create the broker account → save the password's hash
//
// The token is used up last, so that no failure before it burns a use.
// A broker account created for a request that then fails is removed,
// unless the registry said another request for the same key won (its
// account is the winner's). A device saved before the token turned out
// used up (a concurrent request took the last use) is deleted again. An
// undo that fails is logged: the hub's log then names the leftover.
//
// Every error is an *Error whose Kind is one of the Err* sentinels
// (errors.Is matches it); the caller maps each kind to its answer, shows
// the Detail, and keeps the cause (Unwrap) for its log. ErrInternal is the
// hub's own failure (storage, certificate): its cause is not for the agent.
//
// The Service holds no state of its own; it is safe for concurrent use as
// far as its dependencies are.
package enrol
