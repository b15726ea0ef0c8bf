// Command pause is the test cluster's pod sandbox image: it waits for
// SIGTERM or SIGINT and exits. Built locally so that containerd never pulls.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
