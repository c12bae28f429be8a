package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCADocChainFromLeaf (issue 12 finding 12) runs the "Build and check
// the chain from the leaf alone" block of docs/ca.md as written: from an
// SVID alone, the caIssuers URLs lead to the intermediate and the root,
// the CRL distribution points to both CRLs, and openssl verifies the chain
// with every level's CRL.
func TestCADocChainFromLeaf(t *testing.T) {
	need(t, "bash", "openssl", "curl")
	block := docBlock(t, "docs/ca.md", "## Build and check the chain from the leaf alone")
	dir := t.TempDir()
	text := runWalkthrough(t, dir, block)
	for _, want := range []string{
		"X509v3 Subject Key Identifier",
		"CA Issuers - URI:http://127.0.0.1:8461/ca/",
		"root.pem: OK\n",
		"leaf.pem: OK\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, f := range []string{"inter.der", "root.der", "inter.crl", "root.crl"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() < 100 {
			t.Errorf("%s was not fetched: %v", f, err)
		}
	}
}
