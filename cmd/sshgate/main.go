// Command sshgate is the SSH gateway: `sshgate serve` runs it, the other
// commands administer its store. See internal/cli.
//
// Must not import: agent store/storetest
package main

import (
	"os"

	"github.com/sshgate/sshgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
