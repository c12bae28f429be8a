// Command ward is Ward's single binary: server, gateway, sidecar and the
// operator CLI.
package main

import (
	"os"

	"github.com/wardsec/ward/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
