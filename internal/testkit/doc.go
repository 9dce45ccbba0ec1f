// Package testkit holds the small fakes that many packages' tests share: a
// log buffer that collects a logger's output from several goroutines, a
// clock the test moves by hand, and a store opened for a test
// (OpenStore). Any package's tests may import it;
// production code must not (internal/archtest checks that neither binary
// depends on it).
//
// Both types are safe for concurrent use: the code under test writes and
// reads the time from its own goroutines while the test reads the logs and
// moves the clock. Their zero values are ready to use (a Clock's zero value
// reads the zero time).
package testkit
