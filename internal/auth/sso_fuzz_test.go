package auth

import (
	"encoding/json"
	"testing"
)

func ssoForClaims() *sso {
	return newSSO(SSOConfig{UserClaim: "preferred_username", GroupsClaim: "groups",
		AllowedGroups: []string{"staff"}, AllowedDomains: []string{"example.com"}})
}

func TestCheckClaims(t *testing.T) {
	s := ssoForClaims()
	tests := []struct {
		claims string
		reason string // "" accepted
	}{
		{`{"preferred_username":"alice","groups":["staff"],"email":"a@example.com","email_verified":true}`, ""},
		{`{"preferred_username":"alice","groups":"staff","email":"a@EXAMPLE.com","email_verified":true}`, ""},
		{`{"preferred_username":"bob","groups":["staff"],"email":"a@example.com","email_verified":true}`, "user_mismatch"},
		{`{"preferred_username":["alice"]}`, "no_user_claim"},
		{`{}`, "no_user_claim"},
		{`{"preferred_username":"alice","groups":["devs"],"email":"a@example.com","email_verified":true}`, "group_not_allowed"},
		{`{"preferred_username":"alice","groups":[1,{"a":"staff"}],"email":"a@example.com","email_verified":true}`, "group_not_allowed"},
		{`{"preferred_username":"alice","groups":["staff"],"email":"a@example.com","email_verified":false}`, "domain_not_allowed"},
		{`{"preferred_username":"alice","groups":["staff"],"email":"a@example.com.evil.org","email_verified":true}`, "domain_not_allowed"},
		{`{"preferred_username":"alice","groups":["staff"],"email":"a@x@example.com","email_verified":"true"}`, "domain_not_allowed"},
	}
	for _, tt := range tests {
		var c map[string]any
		if err := json.Unmarshal([]byte(tt.claims), &c); err != nil {
			t.Fatal(err)
		}
		_, r := s.checkClaims("alice", c)
		got := ""
		if r != nil {
			got = r.reason
		}
		if got != tt.reason {
			t.Errorf("%s: reason %q, want %q", tt.claims, got, tt.reason)
		}
	}
}

// The claims come from the provider: whatever their shape, checkClaims
// never panics, admits only the user the SSH username names, and what the
// user reads carries no control byte.
func FuzzCheckClaims(f *testing.F) {
	f.Add([]byte(`{"preferred_username":"alice","groups":["staff"],"email":"a@example.com","email_verified":true}`), "alice")
	f.Add([]byte(`{"preferred_username":"al\u001b[2Jice"}`), "alice")
	f.Add([]byte(`{"preferred_username":"alice","groups":null,"email":"@","email_verified":true}`), "alice")
	s := ssoForClaims()
	f.Fuzz(func(t *testing.T, raw []byte, user string) {
		var c map[string]any
		if json.Unmarshal(raw, &c) != nil {
			return
		}
		_, r := s.checkClaims(user, c)
		if r == nil {
			if c["preferred_username"] != user {
				t.Fatalf("admitted %q for claims %s", user, raw)
			}
			return
		}
		for i := 0; i < len(r.public); i++ {
			if b := r.public[i]; b < 0x20 || b == 0x7f {
				t.Fatalf("control byte in %q", r.public)
			}
		}
	})
}
