// Package backup writes and restores a whole hub: its store (a consistent
// snapshot taken while the hub runs) and the files of its data directory
// that the store does not hold (the CA's key and certificate, the admin
// token). The hub's root (hub/hubd) serves Write on the admin API; the
// alicia-hub command (hub) runs Restore. Any hub package may import it.
//
// # Format
//
//	"alicia-hub-backup 1\n"
//	u32 n (big-endian), n bytes of JSON manifest, SHA-256 of those n bytes
//	the store's backup stream (internal/store: framed, CRC-checked, with an end checksum)
//	nothing more
//
// The manifest holds the files by path relative to the data directory.
// Restore writes only the paths it knows (Files), with their fixed modes,
// whatever the manifest says, so a crafted backup cannot write elsewhere.
//
// # Crash and failure
//
// Restore never writes into a data directory that holds anything. It
// builds the hub in a new hidden directory (".<name>.restore-*") and puts
// it into place only once every file and the whole store are written and
// synced: a truncated or damaged backup or a full disk leave the data
// directory as it was. A missing data directory is built next to it and
// renamed into place in one step; an existing empty one (its parent may
// belong to root) is built inside it and its entries moved up, the store
// last, so a crash between the moves leaves a directory without a store,
// which is no hub: move it aside and restore again. A crash while
// building leaves the hidden directory to remove by hand.
//
// A backup holds the CA's private key and the admin token: it is as
// secret as the data directory.
package backup
