// Package spec is the hub's configuration manager: versioned, validated
// configuration documents for devices, layered by scope and merged into
// each device's effective configuration. Only the hub's root (hub/hubd)
// and its REST API (hub/api) import it.
//
// # Kinds and documents
//
// A kind names a configuration and its JSON Schema (draft 2020-12): the
// built-in kind "agent" is what an agent can change at run time; services
// register kinds of their own. A document is one kind's settings at one
// scope:
//
//	default                         every device
//	selector room=garage,role=sensor  devices whose labels match, ordered by the document's priority
//	device <id>                     one device
//
// A device's effective configuration is the JSON merge patch (RFC 7396)
// of its layers in that order: the default, then matching selector
// documents from the lowest priority to the highest (equal priorities by
// selector text), then the device's own. Effective says, for every value,
// which layer set it.
//
// # Versions and compare-and-set
//
// Every write makes an immutable version: a number one above the last
// (per document, never reused, never going backwards), the SHA-256 of
// the content, the author, the time and a comment. A write names the
// version it replaces (its ETag); if another write came first it fails
// with ErrConflict, so of concurrent writers exactly one wins. A rollback
// is a new version whose content is an old one's. Content is validated
// against the kind's schema before anything is stored: a SchemaError
// names each failing value by JSON Pointer and the rule it breaks.
//
// # Durability
//
// A version and the document's head are written in one synced
// transaction (internal/store): a write that returned is on disk, and a
// crash leaves either the whole version or nothing. Keys:
//
//	spec_head/<kind>/<scope>            → JSON head: latest version, hash, priority
//	spec_version/<kind>/<scope>/<16 hex> → JSON Version (content included)
//
// Kinds' schemas live in memory: the built-in ones are compiled in, the
// services' are registered at each start.
//
// # Export and import
//
// Export writes every document with every version as one JSON file
// (ExportFile, format version 1); Import reads one into another hub,
// keeping numbers, hashes, authors, times and comments. Import checks the
// whole file first (numbering, hashes, kinds, Put's checks of content)
// and refuses, writing nothing, where the hub already has other documents
// of the file's kinds; a document already here with the same versions is
// unchanged, so importing a file twice is harmless. A document's versions
// and head share one synced transaction when they fit, else the head
// comes with the last batch: an interrupted import leaves whole documents
// and at most one without a head (invisible to devices, refused to Put),
// and running it again finishes it.
package spec
