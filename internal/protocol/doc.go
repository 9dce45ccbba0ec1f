// Package protocol defines Alicia's wire protocol: the MQTT topics under
// alicia/v1/, the single message envelope, every message type and its
// payload, and strict decoding with size limits and errors that say what is
// wrong and where.
//
// It imports only the standard library and may be imported by every other
// package (agent, hub, internal). docs/protocol.md is the human-readable
// description of the same contract; golden files under testdata/ pin the
// encoding of every message. CheckDisplayText and SafeText hold the one
// rule for text a person reads (names, label values): no control or
// bidirectional characters.
package protocol
