// Package tokens keeps the hub's bearer secrets: the administrator's REST
// token and the join tokens that let a new agent enrol. Tokens are stored
// only as SHA-256 hashes; the clear text exists once, when it is created.
//
// Only hub packages may import it.
package tokens
