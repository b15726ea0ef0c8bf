package sqlite

import (
	"context"
	"fmt"
	"os"
)

// BackupTo writes a consistent copy of the whole database, what the WAL
// holds included, to dest (VACUUM INTO), while other connections and
// processes go on reading and writing. dest must not exist; it is created
// with mode 0600.
func (s *Store) BackupTo(ctx context.Context, dest string) error {
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup store: %w", err)
	}
	f.Close()
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", dest); err != nil {
		os.Remove(dest)
		return fmt.Errorf("backup store: %w", err)
	}
	return nil
}
