// Command strata is the single Strata binary; see internal/cli.
package main

import (
	"os"

	"github.com/strata-cloud/strata/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args))
}
