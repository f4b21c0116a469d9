package testnet

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// RunStoppable runs work until it returns its exit code, for a program
// that makes sandbox namespaces (tapfw-bench, tapfw-soak). On SIGINT,
// SIGTERM or SIGHUP it cancels work's context and waits up to grace for
// it to end (a second signal stops the wait), then calls cleanup, which
// removes the namespaces, and returns 130.
func RunStoppable(name string, grace time.Duration, work func(context.Context) int, cleanup func()) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan int, 1)
	go func() { done <- work(ctx) }()
	select {
	case code := <-done:
		return code
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "\n%s: %v: stopping and removing the namespaces\n", name, sig)
		cancel()
	}
	select {
	case <-done:
	case sig := <-sigs:
		fmt.Fprintf(os.Stderr, "%s: %v again: removing the namespaces now\n", name, sig)
	case <-time.After(grace):
		fmt.Fprintf(os.Stderr, "%s: still busy: removing the namespaces now\n", name)
	}
	cleanup()
	return 130
}

// FuzzNSPrefix names the namespaces of fuzz workers (scripts/fuzz.sh
// sets TAPFW_FUZZ_NS per run and removes what a killed worker leaves).
func FuzzNSPrefix() string {
	if p := os.Getenv("TAPFW_FUZZ_NS"); p != "" {
		return p
	}
	return "fz"
}
