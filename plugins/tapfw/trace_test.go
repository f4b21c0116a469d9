package main

import (
	"context"
	"runtime"
	"testing"

	"github.com/tapfw/tapfw/pkg/testnet"
)

// TAPFW_TRACE makes the plugin report its own peak memory, and testnet
// takes that over wait4's, which counts the memory of the program that
// started the plugin too (Go starts children with vfork). The test holds
// 128 MiB while it runs the plugin, so a peak from wait4 would be above
// it.
func TestTracePeakRSS(t *testing.T) {
	testnet.NeedKernel(t)
	ballast := make([]byte, 128<<20)
	for i := 0; i < len(ballast); i += 4096 {
		ballast[i] = 1
	}
	defer runtime.KeepAlive(ballast)
	forEachBackend(t, func(t *testing.T, be testBackend) {
		h := newHostOn(t, be, "tap110i0")
		c := testnet.Call{Bin: pluginBin, ContainerID: "vm110", IfName: "tap110i0", Config: tapConf("1.0.0", ""),
			Env: append(append([]string(nil), be.env...), "TAPFW_TRACE=1")}
		for _, command := range []string{"ADD", "DEL"} {
			c.Command = command
			_, u, err := testnet.RunPlugin(context.Background(), h.ns, c)
			if err != nil {
				t.Fatal(err)
			}
			if !u.RSSReported {
				t.Errorf("%s: no peak reported", command)
			}
			if u.MaxRSSKB < 1024 || u.MaxRSSKB > 64<<10 {
				t.Errorf("%s: the plugin's peak is %d KiB: not its own", command, u.MaxRSSKB)
			}
		}
	})
}
