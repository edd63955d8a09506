// Command cvmdeploy deploys apps on Phala Cloud with an on-chain KMS.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/cvmdeploy/cvmdeploy/internal/commands"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := commands.Run(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
