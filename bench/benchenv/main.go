package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Main runs a bench program's body with a context that Ctrl-C and SIGTERM
// cancel (so that its cleanup still runs), and on an error prints it,
// prefixed with the bench's name, and exits 1.
func Main(bench string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s bench: %v\n", bench, err)
		stop()
		os.Exit(1)
	}
}
