package sshd

import "syscall"

var errTooManyFiles error = syscall.EMFILE
