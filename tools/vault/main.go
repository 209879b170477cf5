// Command vault builds HashiCorp Vault's server from its published Go module.
//
// Vault's own go.mod replaces its nested api and sdk modules with local folders, so
// `go install github.com/hashicorp/vault@VERSION` is rejected. This wrapper module requires
// those nested modules at their published versions instead and calls the same entry point
// as Vault's main package.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
