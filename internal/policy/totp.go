package policy

import "github.com/sshgate/sshgate/internal/gate"

// How a connection's login met the TOTP second factor, as auth records it
// in the connection's permissions (auth.ExtTOTPProof).
const (
	TOTPProofCode   = "code"   // a code was entered on this connection
	TOTPProofGrace  = "grace"  // no code: the grace window of an earlier one
	TOTPProofNone   = "none"   // no code: the routed target's mode was never
	TOTPProofExempt = "exempt" // no code: the user is not enrolled and mfa.totp.required is enrolled
)

// TOTPSatisfied reports whether a login proven by proof may open a target
// whose effective TOTP mode is mode. An unknown mode or proof is refused.
func TOTPSatisfied(mode, proof string) bool {
	switch proof {
	case TOTPProofExempt, TOTPProofCode:
		return mode == gate.TOTPNever || mode == gate.TOTPGrace || mode == gate.TOTPAlways
	case TOTPProofGrace:
		return mode == gate.TOTPNever || mode == gate.TOTPGrace
	case TOTPProofNone:
		return mode == gate.TOTPNever
	}
	return false
}
