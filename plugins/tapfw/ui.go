package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/console"
	"github.com/tapfw/tapfw/pkg/inspect"
)

// tapfw ui serves the web console (pkg/console) for the firewall of the
// namespace it runs in, with this plugin's backend: the same reads as
// list, show and explain, and the same apply.

// DefaultTokenFile is where tapfw ui keeps its token unless told.
const DefaultTokenFile = "/etc/tapfw/ui.token"

func uiFlags(fs *flag.FlagSet) runFunc {
	listen := fs.String("listen", "127.0.0.1:8390", "serve on `HOST:PORT`; keep it on loopback (reach it with ssh -L) unless the network to it is trusted: the console speaks plain HTTP")
	base := fs.String("config", "", "the base config `FILE` its edits change, as tapfw apply --config (default $TAPFW_CONFIG, else "+config.DefaultBaseConfig+")")
	tokenFile := fs.String("token-file", DefaultTokenFile, "the `FILE` holding the token every request needs; made with a new token, mode 0600, if absent")
	readOnly := fs.Bool("read-only", false, "show everything, change nothing (every change answers 403)")
	sample := fs.Duration("sample", 5*time.Second, "read the counters for the chart every `D`; it shows the last 120 samples")
	return func(o *operator, _ []string) int {
		return o.ui(*listen, *base, *tokenFile, console.Options{ReadOnly: *readOnly, Sample: *sample, History: 120 * *sample})
	}
}

// ui serves the console until SIGINT or SIGTERM.
func (o *operator) ui(listen, base, tokenFile string, opt console.Options) int {
	if o.p.envErr != nil {
		return o.fail("%v", o.p.envErr)
	}
	if base == "" {
		base, _ = config.NICPaths("")
	}
	token, created, err := console.LoadToken(tokenFile)
	if err != nil {
		return o.fail("ui: %v", err)
	}
	if created {
		fmt.Fprintf(o.stderr, "tapfw ui: wrote a new token to %s\n", tokenFile)
	}
	if opt.Sample < 100*time.Millisecond {
		return o.fail("ui: --sample: %v is shorter than 100ms", opt.Sample)
	}
	opt.Config, opt.Token = base, token
	srv, err := console.New(uiHost{o}, opt)
	if err != nil {
		return o.fail("ui: %v", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return o.fail("ui: %v", err)
	}
	hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	fmt.Fprintf(o.stderr, "tapfw ui: serving http://%s/ (backend %s, config %s%s); Ctrl-C stops it\n",
		ln.Addr(), o.p.backendName, base, map[bool]string{true: ", read-only"}[opt.ReadOnly])
	select {
	case err := <-errc:
		return o.fail("ui: %v", err)
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shut); err != nil {
		return o.fail("ui: stopping: %v", err)
	}
	return 0
}

// uiHost is the console's view of the plugin.
type uiHost struct{ o *operator }

func (h uiHost) Backend() string { return h.o.p.backendName }

func (h uiHost) Taps() ([]inspect.Tap, error) { return h.o.taps() }

func (h uiHost) Tap(name string) (inspect.Tap, []inspect.Rule, error) {
	t, rules, err := h.o.showTap(name)
	if err == nil && len(rules) == 0 && len(t.IPs) == 0 {
		err = console.ErrNotFound
	}
	return t, rules, err
}

func (h uiHost) Explain(q console.Query) (console.Explained, error) {
	j, err := h.o.p.readJudge()
	if err != nil {
		return console.Explained{}, err
	}
	res, pkt, err := j.explain(query{tap: q.Tap, dir: q.Dir, proto: q.Proto, src: q.Src, dst: q.Dst, sport: q.SPort, dport: q.DPort,
		icmp: q.ICMPType, state: q.State, peer: q.Peer, hopLimit: q.HopLimit})
	if err != nil {
		return console.Explained{}, &console.Refused{Err: err}
	}
	return console.Explained{Packet: pkt, Result: res, Text: explainText(pkt, res)}, nil
}

func (h uiHost) Check(base string, data []byte) error {
	if _, err := h.o.readWanted(base, data, ""); err != nil {
		return &console.Refused{Err: err}
	}
	return nil
}

func (h uiHost) Apply(base string, data []byte, dryRun bool) ([]string, error) {
	lines, err := h.o.applyConfig(base, data, "", dryRun)
	var r *refused
	if errors.As(err, &r) {
		return lines, &console.Refused{Err: r.err}
	}
	return lines, err
}
