package policy

import (
	"testing"

	"github.com/sshgate/sshgate/internal/gate"
)

func TestTOTPSatisfied(t *testing.T) {
	const (
		always = gate.TOTPAlways
		grace  = gate.TOTPGrace
		never  = gate.TOTPNever
	)
	tests := []struct {
		mode, proof string
		want        bool
	}{
		{always, TOTPProofCode, true},
		{grace, TOTPProofCode, true},
		{never, TOTPProofCode, true},
		{always, TOTPProofGrace, false}, // a grace-window login cannot open an always target
		{grace, TOTPProofGrace, true},
		{never, TOTPProofGrace, true},
		{always, TOTPProofNone, false}, // logged in for a never target: no code
		{grace, TOTPProofNone, false},
		{never, TOTPProofNone, true},
		{always, TOTPProofExempt, true}, // not enrolled, mfa.totp.required enrolled
		{grace, TOTPProofExempt, true},
		{never, TOTPProofExempt, true},
		{always, "", false}, // nothing recorded
		{never, "", false},
		{always, "Code", false},
		{"", TOTPProofCode, false}, // unknown mode
		{"sometimes", TOTPProofExempt, false},
	}
	for _, tt := range tests {
		if got := TOTPSatisfied(tt.mode, tt.proof); got != tt.want {
			t.Errorf("TOTPSatisfied(%q, %q) = %v, want %v", tt.mode, tt.proof, got, tt.want)
		}
	}
}
