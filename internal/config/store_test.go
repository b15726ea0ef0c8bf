package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestStoreConfig(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		errs       []string // every one must appear, and no other store.* problem
	}{
		{"default", "", nil},
		{"sqlite", "store:\n  driver: sqlite\n", nil},
		{"postgres", "store:\n  driver: postgres\n  dsn: postgres://sshgate@db:5432/sshgate\n  password_file: /run/secrets/pg\n  sslmode: verify-full\n  ca_file: /etc/pg-ca.pem\n  max_conns: 8\n", nil},
		{"postgres keyword dsn", "store:\n  driver: postgres\n  dsn: host=db dbname=sshgate user=sshgate\n", nil},
		{"bad driver", "store:\n  driver: mysql\n", []string{`store.driver: "mysql" is not sqlite or postgres`}},
		{"sqlite with postgres keys", "store:\n  dsn: postgres://db/x\n  sslmode: require\n  max_conns: 3\n",
			[]string{"store.dsn: only for driver postgres", "store.sslmode: only for driver postgres", "store.max_conns: only for driver postgres"}},
		{"postgres without dsn", "store:\n  driver: postgres\n", []string{"store.dsn: required"}},
		{"password in url", "store:\n  driver: postgres\n  dsn: postgres://u:hunter2@db/x\n", []string{"store.dsn: holds a password"}},
		{"password in query", "store:\n  driver: postgres\n  dsn: postgres://u@db/x?password=hunter2\n", []string{"store.dsn: holds a password"}},
		{"password keyword", "store:\n  driver: postgres\n  dsn: host=db password=hunter2\n", []string{"store.dsn: holds a password"}},
		{"other url", "store:\n  driver: postgres\n  dsn: mysql://db/x\n", []string{"store.dsn: a URL must start with postgres://"}},
		{"every problem", "store:\n  driver: postgres\n  sslmode: sometimes\n  ca_file: /ca.pem\n  max_conns: -1\n",
			[]string{"store.dsn: required", `store.sslmode: "sometimes" is not one of`, "store.ca_file: is used only with", "store.max_conns: -1 is out of range"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(f, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			if err := c.Validate(); err != nil {
				for _, l := range strings.Split(err.Error(), "\n") {
					if strings.HasPrefix(l, "store.") {
						got = append(got, l)
					}
				}
			}
			if len(got) != len(tc.errs) {
				t.Fatalf("store problems %q, want %d: %q", got, len(tc.errs), tc.errs)
			}
			all := strings.Join(got, "\n")
			for _, w := range tc.errs {
				if !strings.Contains(all, w) {
					t.Errorf("problems %q lack %q", got, w)
				}
			}
			if strings.Contains(all, "hunter2") {
				t.Errorf("a problem shows the password: %q", got)
			}
		})
	}
}
