package controlplane

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/harness"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/report"
	"github.com/tapfw/tapfw/cmd/tapfw-bench/internal/taps"
)

// The web console at N taps: what its taps page and API cost beside the
// CLI's list, and what an edit through it costs beside tapfw apply. The
// console (tapfw ui) runs in the control plane's host namespace on its
// loopback; the requests are dialed there and timed from the client.

// consolePort is where the measured console listens in the sandbox.
const consolePort = "127.0.0.1:8390"

// measureConsole times Calls requests of each kind: GET /api/taps, the
// taps page, a PUT of the named set every tap's host section uses (one
// entry in or out: an apply), and tapfw list --json beside them.
func (b *bench) measureConsole(ctx context.Context, n int, row *report.CPResult) error {
	h := b.h
	tmp, err := h.Tmp()
	if err != nil {
		return err
	}
	conf, token := filepath.Join(tmp, "console.conf"), filepath.Join(tmp, "console.token")
	if err := os.WriteFile(conf, taps.BaseConfig(), 0o644); err != nil {
		return err
	}
	stop, c, err := b.startConsole(ctx, conf, token)
	if err != nil {
		return err
	}
	defer stop()
	list := func() (report.Sample, error) {
		_, s, err := harness.RunIn(ctx, b.cp, nil, taps.OperatorEnv(h.O, b.lock), h.O.Plugin, "list", "--json")
		return s, err
	}
	sets := [2]string{`["` + strings.Join(taps.AdminsSet, `","`) + `","` + applyExtra + `"]`, `["` + strings.Join(taps.AdminsSet, `","`) + `"]`}
	var api, page, put, cli []report.Sample
	for k := 0; k < h.O.Calls; k++ {
		for _, m := range []struct {
			into         *[]report.Sample
			method, path string
			body, want   string
		}{
			{&api, "GET", "/api/taps", "", `"tap"`},
			{&page, "GET", "/", "", "<table class=\"taps\">"},
			{&put, "PUT", "/api/sets/admins", sets[k%2], "changed ipsets.admins"},
		} {
			s, err := c.timed(ctx, m.method, m.path, m.body, m.want)
			if err != nil {
				return fmt.Errorf("console N=%d: %w", n, err)
			}
			*m.into = append(*m.into, s)
		}
		s, err := list()
		if err != nil {
			return fmt.Errorf("console N=%d: tapfw list: %w", n, err)
		}
		cli = append(cli, s)
	}
	row.ConsoleTaps, row.ConsolePage, row.ConsolePut, row.ListCLI = report.Summarize(api), report.Summarize(page), report.Summarize(put), report.Summarize(cli)
	h.Progress("control plane N=%d: console GET /api/taps p50 %.1f ms, taps page %.1f ms, PUT a set %.1f ms; tapfw list --json %.1f ms",
		n, row.ConsoleTaps.P50, row.ConsolePage.P50, row.ConsolePut.P50, row.ListCLI.P50)
	return nil
}

// consoleClient sends requests to the console with its token.
type consoleClient struct {
	http  *http.Client
	token string
}

// startConsole runs tapfw ui on conf and waits until it answers; stop
// ends it.
func (b *bench) startConsole(ctx context.Context, conf, tokenFile string) (stop func(), c *consoleClient, err error) {
	h := b.h
	argv := append([]string{"netns", "exec", b.cp.Name, "env"}, taps.OperatorEnv(h.O, b.lock)...)
	// The chart's sampling would read the ruleset during the timed
	// requests: once an hour here.
	argv = append(argv, h.O.Plugin, "ui", "--listen", consolePort, "--config", conf, "--token-file", tokenFile, "--sample", "1h")
	cmd := exec.CommandContext(ctx, "ip", argv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}
	c = &consoleClient{http: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{DialContext: b.cp.DialContext}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if data, err := os.ReadFile(tokenFile); err == nil && len(data) > 0 {
			c.token = strings.TrimSpace(string(data))
			if _, err := c.timed(ctx, "GET", "/api/taps", "", ""); err == nil {
				return stop, c, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, nil, fmt.Errorf("tapfw ui did not start: %s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// timed sends one request and times it to the last byte of the answer,
// which must be a 200 holding want.
func (c *consoleClient) timed(ctx context.Context, method, path, body, want string) (report.Sample, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+consolePort+path, strings.NewReader(body))
	if err != nil {
		return report.Sample{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return report.Sample{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	wall := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(data), want) {
		return report.Sample{}, fmt.Errorf("%s %s: %d %v: %.300s", method, path, resp.StatusCode, err, data)
	}
	return report.Sample{WallMs: float64(wall.Nanoseconds()) / 1e6}, nil
}
