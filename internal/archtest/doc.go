// Package archtest holds tests of the repository's architecture: the import
// directions between agent, hub, hal and internal packages, and that every
// package is documented. It contains no code but tests and imports nothing
// of the project.
package archtest
