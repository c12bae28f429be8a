package ca_test

import (
	"bytes"
	"os"
	"testing"
)

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func containsAny(data []byte, s string) bool { return bytes.Contains(data, []byte(s)) }
