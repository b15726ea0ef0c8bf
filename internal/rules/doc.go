// Package rules holds the project's import rules to account: its test lists
// every package of the module with `go list -deps -json ./...`, reads the
// "Must not import:" lines of each package's doc comment and fails when a
// package depends, directly or through others, on a package its rule
// forbids, or when a package under internal/ or cmd/ states no rule.
//
// A rule is one line of the package doc comment:
//
//	Must not import: store relay target/...
//
// Each word is an import path relative to github.com/sshgate/sshgate/internal/
// ("store"), or to the module root when it starts with cmd/ or e2e/
// ("cmd/sshgate"); a trailing /... means the package and everything under it.
// A word whose first element holds a dot is a full import path outside the
// project ("github.com/docker/..."). The line
//
//	Must not import: any project package
//
// forbids every package of the module. A package may have several such lines;
// their words add up. Test files are not held by the rules (go list -deps
// without -test leaves them out).
//
// The package has no code of its own.
//
// Must not import: any project package
package rules
