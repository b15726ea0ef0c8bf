package gate

import "time"

// SSOSession lets a public key, after one single sign-on through the
// identity provider, log its user in again from the same source prefix
// without a new browser trip, until Expires. It is bound to all three of
// User, Fingerprint and Source; `sshgate sso revoke` removes it.
type SSOSession struct {
	User        string
	Fingerprint string // "SHA256:..." of the key the device login authenticated
	Source      string // the client's address prefix (IPv4 /N, IPv6 /N) as a CIDR string
	Subject     string // the provider's subject (sub claim)
	AMR         string // the ID token's amr values, comma-separated
	Expires     time.Time
	CreatedAt   time.Time
}

// SSOLogin is what a single sign-on through the identity provider (or a
// reuse of one, Reused) proved about a connection, beside its Identity.
type SSOLogin struct {
	Subject string   // the provider's sub claim
	Issuer  string   // the provider's issuer
	AMR     []string // the ID token's amr claim
	Groups  []string // the groups claim at sign-in
	Reused  bool     // a reuse of an earlier device login (SSOSession), no browser trip
	// PublicKey is the authorized_keys form of the key the connection
	// proved ("" when the client signed in with keyboard-interactive
	// alone): `cert` certifies it.
	PublicKey string
	Source    string    // the source prefix the reuse window is bound to
	Expires   time.Time // end of the reuse window (zero: none)
	// SecondFactor: the operator counts this sign-in as a second factor.
	SecondFactor bool
}
