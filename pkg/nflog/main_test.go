package nflog_test

import (
	"os"
	"testing"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// TestMain fails the run if a test changed the host's own network: the
// kernel tests log packets inside sandbox namespaces.
func TestMain(m *testing.M) { os.Exit(testnet.GuardHost(m)) }
