// Package haltest is the conformance suite of hal.Board: Run checks one
// board, simulated or real, the same way every backend is checked (like
// testing/slogtest for slog handlers). Only tests may import it.
package haltest
