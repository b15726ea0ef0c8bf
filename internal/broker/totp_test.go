package broker

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/sshgate/sshgate/internal/auth"
	"github.com/sshgate/sshgate/internal/gate"
	"github.com/sshgate/sshgate/internal/policy"
	"github.com/sshgate/sshgate/internal/sshd"
)

type fixedModes map[string]string

func (m fixedModes) TargetMode(_ context.Context, t gate.Target) string { return m[t.Name] }

func TestSecondFactorAllows(t *testing.T) {
	modes := fixedModes{"web-1": gate.TOTPAlways, "web-2": gate.TOTPGrace, "db": gate.TOTPNever}
	tests := []struct {
		name   string
		ext    map[string]string // besides the identity
		target string
		off    bool // no second factor on this gate
		want   bool
	}{
		{"code opens always", map[string]string{auth.ExtTOTPProof: policy.TOTPProofCode}, "web-1", false, true},
		{"grace opens grace", map[string]string{auth.ExtTOTPProof: policy.TOTPProofGrace}, "web-2", false, true},
		{"grace does not open always", map[string]string{auth.ExtTOTPProof: policy.TOTPProofGrace}, "web-1", false, false},
		{"no code opens never", map[string]string{auth.ExtTOTPProof: policy.TOTPProofNone}, "db", false, true},
		{"no code does not open grace", map[string]string{auth.ExtTOTPProof: policy.TOTPProofNone}, "web-2", false, false},
		{"not enrolled opens always", map[string]string{auth.ExtTOTPProof: policy.TOTPProofExempt}, "web-1", false, true},
		{"webhook login", map[string]string{auth.ExtWebhook: "1"}, "web-1", false, true},
		{"nothing recorded", nil, "db", false, false},
		{"second factor off", nil, "web-1", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := &gate.Identity{User: "alice", Method: "publickey"}
			ext := id.Extensions()
			for k, v := range tt.ext {
				ext[k] = v
			}
			b := &Broker{}
			if !tt.off {
				b.SetTOTPModes(modes)
			}
			c := &conn{b: b, id: id, ctx: context.Background(), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				sc: &sshd.Conn{ServerConn: &ssh.ServerConn{Permissions: &ssh.Permissions{Extensions: ext}}}}
			err := c.secondFactorAllows(policy.Permit{Target: gate.Target{Name: tt.target}})
			if (err == nil) != tt.want {
				t.Fatalf("got %v, want allowed %v", err, tt.want)
			}
			if err != nil && publicText(err) != `target "`+tt.target+`" requires a verification code: reconnect as alice+`+tt.target {
				t.Fatalf("message %q", publicText(err))
			}
		})
	}
}
