package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/websocket"
)

// ChromiumPath is the browser StartBrowser runs (Debian's chromium launcher).
var ChromiumPath = "/usr/bin/chromium"

// DefaultPageTimeout bounds every Page call, and each Navigate or Click
// with the wait for the load it causes; NewPage copies it to Page.Timeout.
const DefaultPageTimeout = 20 * time.Second

const (
	browserStartTimeout = 30 * time.Second // chromium to print its DevTools URL
	browserDialTimeout  = 5 * time.Second  // TCP connect and websocket handshake
	browserCallTimeout  = 10 * time.Second // a browser-level CDP command
	browserGoneTimeout  = 5 * time.Second  // the process group to be gone
	pollInterval        = 25 * time.Millisecond
	stderrTailLines     = 20
)

// cdpOrigin is the Origin of our websocket handshake. Chromium refuses a
// handshake with an Origin it was not told to allow, and x/net/websocket
// always sends one: one no web page can have keeps pages out of DevTools.
const cdpOrigin = "http://tapfw-testnet.invalid"

// browserFlags are what headless Chromium needs as root in a namespace
// with nothing but lo: no sandbox (it refuses root without), no /dev/shm
// (small in containers), and nothing that reaches out (first run, sync,
// component updates, extensions) or pops up (default browser check).
var browserFlags = []string{
	"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
	"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
	"--disable-component-update", "--disable-sync", "--disable-extensions",
	"--disable-default-apps", "--mute-audio", "--hide-scrollbars",
	"--password-store=basic", "--use-mock-keychain", "--window-size=1280,800",
	"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
	"--remote-allow-origins=" + cdpOrigin,
}

// devtoolsLine is chromium's announcement of its browser endpoint.
var devtoolsLine = regexp.MustCompile(`DevTools listening on (ws://127\.0\.0\.1:\d+/devtools/browser/\S+)`)

// Browser is a headless Chromium running inside ns (`ip netns exec`), its
// DevTools endpoint on the namespace's 127.0.0.1. It has its own temporary
// profile and HOME, so cookies and state start empty and nothing is left
// in the caller's home.
type Browser struct {
	ns     *NS
	cmd    *exec.Cmd
	dir    string // profile and HOME, removed by Close
	stderr *stderrWatch
	exited chan struct{} // closed when cmd.Wait returned
	conn   *cdpConn      // browser-level connection; pages are flat sessions on it

	closeOnce sync.Once
	closeErr  error
}

// StartBrowser runs Chromium in ns and connects to it over the Chrome
// DevTools Protocol. On error nothing is left running.
func StartBrowser(ns *NS) (*Browser, error) {
	dir, err := os.MkdirTemp("", "tapfw-chromium-")
	if err != nil {
		return nil, fmt.Errorf("start browser: profile dir: %w", err)
	}
	b := &Browser{ns: ns, dir: dir, stderr: &stderrWatch{found: make(chan string, 1)}, exited: make(chan struct{})}
	args := append([]string{"netns", "exec", ns.Name, ChromiumPath}, browserFlags...)
	args = append(args, "--user-data-dir="+dir, "about:blank")
	b.cmd = exec.Command("ip", args...)
	b.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	b.cmd.Stderr = b.stderr
	// Its own group, so Close can kill every process chromium forks; and
	// killed with the test binary (Pdeathsig holds across ip's exec).
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// Bounds Wait should a child that left the group keep stderr open.
	b.cmd.WaitDelay = time.Second
	if err := b.cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("start browser: %w", err)
	}
	go func() {
		_ = b.cmd.Wait()
		close(b.exited)
	}()
	if err := b.connect(); err != nil {
		_ = b.Close()
		return nil, fmt.Errorf("start browser in %s: %w", ns.Name, err)
	}
	return b, nil
}

// connect waits for the DevTools URL and opens the browser connection,
// dialed inside the namespace.
func (b *Browser) connect() error {
	var wsURL string
	select {
	case wsURL = <-b.stderr.found:
	case <-b.exited:
		return fmt.Errorf("chromium exited before listening (%s): %s", b.cmd.ProcessState, b.stderr.tail())
	case <-time.After(browserStartTimeout):
		return fmt.Errorf("no devtools url after %v: %s", browserStartTimeout, b.stderr.tail())
	}
	u, err := url.Parse(wsURL)
	if err != nil {
		return fmt.Errorf("devtools url %s: %w", wsURL, err)
	}
	addr := u.Host
	ctx, cancel := context.WithTimeout(context.Background(), browserDialTimeout)
	defer cancel()
	conn, err := b.ns.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial devtools %s: %w", addr, err)
	}
	c, err := dialCDP(conn, wsURL)
	if err != nil {
		return err
	}
	b.conn = c
	return nil
}

// Close kills Chromium (SIGKILL to its process group: the profile is thrown
// away, so there is nothing to shut down cleanly), waits until no process
// of the group is alive and removes the profile. It is safe on a nil or
// half-started Browser and returns the first result when repeated.
func (b *Browser) Close() error {
	if b == nil {
		return nil
	}
	b.closeOnce.Do(func() { b.closeErr = b.close() })
	return b.closeErr
}

func (b *Browser) close() error {
	var errs []error
	if b.conn != nil {
		b.conn.close()
	}
	if b.cmd != nil && b.cmd.Process != nil {
		pgid := b.cmd.Process.Pid
		// The group outlives its leader: renderers and zygotes stay in it.
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill chromium group %d: %w", pgid, err))
		}
		<-b.exited
		if err := waitGroupGone(pgid, browserGoneTimeout); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(b.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove chromium profile: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close browser: %w", err)
	}
	return nil
}

// waitGroupGone kills process group pgid until no live process is left in
// it. Zombies count as gone: they are dead, and orphans wait for the
// machine's init to reap them (here that takes a second or two).
func waitGroupGone(pgid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for syscall.Kill(-pgid, syscall.SIGKILL) == nil {
		live := liveInGroup(pgid)
		if live == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes of chromium group %d alive after %v", live, pgid, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// liveInGroup counts the processes of group pgid that are not zombies.
func liveInGroup(pgid int) int {
	entries, _ := os.ReadDir("/proc")
	live := 0
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		i := bytes.LastIndexByte(stat, ')')
		if err != nil || i < 0 {
			continue // gone meanwhile
		}
		// After "pid (comm)": state ppid pgrp ...
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			live++
		}
	}
	return live
}

// Cookie is a cookie of the browser's jar as Storage.getCookies reports it.
type Cookie struct {
	Name     string  `json:"name"`
	Value    string  `json:"value"`
	Domain   string  `json:"domain"`
	Path     string  `json:"path"`
	Expires  float64 `json:"expires"` // seconds since the epoch; -1 for a session cookie
	HTTPOnly bool    `json:"httpOnly"`
	Secure   bool    `json:"secure"`
	Session  bool    `json:"session"`
	SameSite string  `json:"sameSite"` // "Strict", "Lax", "None" or ""
}

// Cookies returns every cookie in the browser's jar.
func (b *Browser) Cookies() ([]Cookie, error) {
	ctx, cancel := context.WithTimeout(context.Background(), browserCallTimeout)
	defer cancel()
	var res struct {
		Cookies []Cookie `json:"cookies"`
	}
	if err := b.conn.call(ctx, "", "Storage.getCookies", nil, &res); err != nil {
		return nil, fmt.Errorf("get cookies: %w", err)
	}
	return res.Cookies, nil
}

// Page is one tab of a Browser, attached over CDP as a flat session.
type Page struct {
	b         *Browser
	targetID  string
	sessionID string

	// Timeout bounds every call, and Navigate or Click with the load they
	// wait for; DefaultPageTimeout unless changed.
	Timeout time.Duration
}

// NewPage opens a new tab on about:blank and attaches to it.
func (b *Browser) NewPage() (*Page, error) {
	ctx, cancel := context.WithTimeout(context.Background(), browserCallTimeout)
	defer cancel()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.conn.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		return nil, fmt.Errorf("new page: %w", err)
	}
	var session struct {
		SessionID string `json:"sessionId"`
	}
	params := map[string]any{"targetId": target.TargetID, "flatten": true}
	if err := b.conn.call(ctx, "", "Target.attachToTarget", params, &session); err != nil {
		_ = b.conn.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": target.TargetID}, nil)
		return nil, fmt.Errorf("new page: %w", err)
	}
	return &Page{b: b, targetID: target.TargetID, sessionID: session.SessionID, Timeout: DefaultPageTimeout}, nil
}

// Close closes the tab.
func (p *Page) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), browserCallTimeout)
	defer cancel()
	if err := p.b.conn.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": p.targetID}, nil); err != nil {
		return fmt.Errorf("close page: %w", err)
	}
	return nil
}

func (p *Page) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), p.Timeout)
}

func (p *Page) call(ctx context.Context, method string, params, result any) error {
	return p.b.conn.call(ctx, p.sessionID, method, params, result)
}

// Navigate loads url in the tab and waits until the new document has
// loaded (readyState "complete"). A network error is an error; an HTTP
// error status is not (the page shows what the server sent).
func (p *Page) Navigate(url string) error {
	ctx, cancel := p.context()
	defer cancel()
	marker, err := p.markDocument(ctx)
	if err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	var res struct {
		LoaderID  string `json:"loaderId"`
		ErrorText string `json:"errorText"`
	}
	if err := p.call(ctx, "Page.navigate", map[string]any{"url": url}, &res); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	if res.ErrorText != "" {
		return fmt.Errorf("navigate to %s: %s", url, res.ErrorText)
	}
	cond := newDocument(marker)
	if res.LoaderID == "" { // a same-document navigation (only the fragment changed)
		cond = `document.readyState === "complete"`
	}
	if err := p.waitFor(ctx, cond); err != nil {
		return fmt.Errorf("navigate to %s: %w", url, err)
	}
	return nil
}

// markDocument tags the current document with a random token that a new
// document will not have.
func (p *Page) markDocument(ctx context.Context) (string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	marker := hex.EncodeToString(rnd[:])
	if err := p.eval(ctx, fmt.Sprintf("window.__tapfwDocument = %q", marker), nil); err != nil {
		return "", fmt.Errorf("mark document: %w", err)
	}
	return marker, nil
}

// newDocument is the condition that the document marked with marker was
// replaced by one that has loaded.
func newDocument(marker string) string {
	return fmt.Sprintf(`window.__tapfwDocument !== %q && document.readyState === "complete"`, marker)
}

// Eval evaluates the JavaScript expression js in the page (awaiting it if
// it is a promise) and stores its JSON value in out unless out is nil. A
// thrown exception or rejected promise is an error with its text.
func (p *Page) Eval(js string, out any) error {
	ctx, cancel := p.context()
	defer cancel()
	return p.eval(ctx, js, out)
}

func (p *Page) eval(ctx context.Context, js string, out any) error {
	params := map[string]any{"expression": js, "returnByValue": true, "awaitPromise": true}
	var res struct {
		Result struct {
			Type        string          `json:"type"`
			Value       json.RawMessage `json:"value"`
			Unserial    string          `json:"unserializableValue"`
			Description string          `json:"description"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception *struct {
				Description string          `json:"description"`
				Value       json.RawMessage `json:"value"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	if err := p.call(ctx, "Runtime.evaluate", params, &res); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if e := res.Exception; e != nil {
		msg := e.Text
		if x := e.Exception; x != nil && x.Description != "" {
			msg += " " + strings.SplitN(x.Description, "\n", 2)[0]
		} else if x != nil && len(x.Value) > 0 {
			msg += " " + string(x.Value)
		}
		return fmt.Errorf("eval: javascript: %s", msg)
	}
	if out == nil || res.Result.Type == "undefined" {
		return nil
	}
	if res.Result.Unserial != "" || len(res.Result.Value) == 0 {
		return fmt.Errorf("eval: %s result %s has no JSON value", res.Result.Type, res.Result.Unserial+res.Result.Description)
	}
	if err := json.Unmarshal(res.Result.Value, out); err != nil {
		return fmt.Errorf("eval: decode result: %w", err)
	}
	return nil
}

// WaitFor polls the JavaScript expression jsCond until it is truthy. An
// evaluation that fails (e.g. while a new document replaces the old one,
// or an element is not there yet) counts as false; on timeout the error
// has the last such failure.
func (p *Page) WaitFor(jsCond string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.waitFor(ctx, jsCond)
}

func (p *Page) waitFor(ctx context.Context, jsCond string) error {
	var last error
	for {
		var ok bool
		err := p.eval(ctx, "!!("+jsCond+")", &ok)
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("wait for %s: %w (last: %v)", jsCond, ctx.Err(), last)
			}
			return fmt.Errorf("wait for %s: %w", jsCond, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// onElement is JavaScript running body with el the first element that
// matches selector; no match throws.
func onElement(selector, body string) string {
	q, _ := json.Marshal(selector)
	return fmt.Sprintf(`(() => { const el = document.querySelector(%s); `+
		`if (!el) throw new Error("no element matches " + %s); %s })()`, q, q, body)
}

// Fill sets the value of the input, textarea or select that matches the
// CSS selector and fires its input and change events, as typing would.
func (p *Page) Fill(selector, value string) error {
	v, _ := json.Marshal(value)
	js := onElement(selector, fmt.Sprintf(`el.focus(); el.value = %s; `+
		`el.dispatchEvent(new Event("input", {bubbles: true})); `+
		`el.dispatchEvent(new Event("change", {bubbles: true}));`, v))
	if err := p.Eval(js, nil); err != nil {
		return fmt.Errorf("fill %s: %w", selector, err)
	}
	return nil
}

// Click clicks the element that matches the CSS selector (element.click(),
// so a submit button submits its form as a user's click does: submit
// event, validation, the request) and waits until the navigation this
// causes has loaded a new document. It is for clicks that navigate; for
// others Eval the click.
func (p *Page) Click(selector string) error {
	ctx, cancel := p.context()
	defer cancel()
	marker, err := p.markDocument(ctx)
	if err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	if err := p.eval(ctx, onElement(selector, "el.click();"), nil); err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	if err := p.waitFor(ctx, newDocument(marker)); err != nil {
		return fmt.Errorf("click %s: %w", selector, err)
	}
	return nil
}

// Text returns the rendered text (innerText) of the element that matches
// the CSS selector.
func (p *Page) Text(selector string) (string, error) {
	var s string
	if err := p.Eval(onElement(selector, "return el.innerText;"), &s); err != nil {
		return "", fmt.Errorf("text of %s: %w", selector, err)
	}
	return s, nil
}

// Screenshot sets the viewport to width x height CSS pixels at scale 1
// (it stays so) and writes a PNG of it to path.
func (p *Page) Screenshot(path string, width, height int) error {
	ctx, cancel := p.context()
	defer cancel()
	metrics := map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}
	if err := p.call(ctx, "Emulation.setDeviceMetricsOverride", metrics, nil); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	var res struct {
		Data string `json:"data"`
	}
	if err := p.call(ctx, "Page.captureScreenshot", map[string]any{"format": "png"}, &res); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		return fmt.Errorf("screenshot: decode: %w", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return nil
}

// stderrWatch is chromium's stderr: it reports the DevTools URL once and
// keeps the last lines for error messages.
type stderrWatch struct {
	found chan string

	mu      sync.Mutex
	partial []byte
	lines   []string
	sent    bool
}

func (w *stderrWatch) Write(data []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, data...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(data), nil
		}
		line := strings.TrimSpace(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
		if m := devtoolsLine.FindStringSubmatch(line); m != nil && !w.sent {
			w.sent = true
			w.found <- m[1]
		}
		if line != "" {
			w.lines = append(w.lines, line)
			if len(w.lines) > stderrTailLines {
				w.lines = w.lines[1:]
			}
		}
	}
}

// tail is the last lines of stderr, for an error message.
func (w *stderrWatch) tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.lines) == 0 {
		return "no output"
	}
	return strings.Join(w.lines, " | ")
}

// cdpConn is a CDP websocket: calls wait for the reply with their id;
// events are dropped (the Page methods poll instead).
type cdpConn struct {
	ws     *websocket.Conn
	nextID atomic.Int64
	wmu    sync.Mutex // one message, with its write deadline, at a time

	mu      sync.Mutex
	pending map[int64]chan cdpMessage
	err     error         // why the connection ended, once done is closed
	done    chan struct{} // closed when the read loop ends
}

type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    any             `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    string `json:"data"`
	} `json:"error,omitempty"`
}

// dialCDP does the websocket handshake for wsURL on conn (already dialed
// where the endpoint is reachable) and starts reading.
func dialCDP(conn net.Conn, wsURL string) (*cdpConn, error) {
	cfg, err := websocket.NewConfig(wsURL, cdpOrigin)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("devtools url %s: %w", wsURL, err)
	}
	_ = conn.SetDeadline(time.Now().Add(browserDialTimeout))
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("websocket handshake with %s: %w", wsURL, err)
	}
	_ = conn.SetDeadline(time.Time{})
	ws.MaxPayloadBytes = 64 << 20 // screenshots of large viewports
	c := &cdpConn{ws: ws, pending: map[int64]chan cdpMessage{}, done: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

func (c *cdpConn) readLoop() {
	var err error
	for {
		var data []byte
		if err = websocket.Message.Receive(c.ws, &data); err != nil {
			break
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil || m.ID == 0 {
			continue // an event, or not for us
		}
		c.mu.Lock()
		ch := c.pending[m.ID]
		delete(c.pending, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
	c.mu.Lock()
	c.err = fmt.Errorf("devtools connection closed: %w", err)
	c.mu.Unlock()
	close(c.done)
}

// call sends method with params to session ("" is the browser) and decodes
// the reply's result into result unless it is nil.
func (c *cdpConn) call(ctx context.Context, session, method string, params, result any) error {
	id := c.nextID.Add(1)
	msg, err := json.Marshal(cdpMessage{ID: id, SessionID: session, Method: method, Params: params})
	if err != nil {
		return fmt.Errorf("%s: encode: %w", method, err)
	}
	ch := make(chan cdpMessage, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.send(ctx, msg); err != nil {
		return fmt.Errorf("%s: send: %w", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d) %s", method, m.Error.Message, m.Error.Code, m.Error.Data)
		}
		if result != nil {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("%s: decode: %w", method, err)
			}
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", method, ctx.Err())
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return fmt.Errorf("%s: %w", method, c.err)
	}
}

func (c *cdpConn) send(ctx context.Context, msg []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	deadline, _ := ctx.Deadline() // zero: none
	_ = c.ws.SetWriteDeadline(deadline)
	return websocket.Message.Send(c.ws, string(msg))
}

func (c *cdpConn) close() {
	_ = c.ws.Close()
	<-c.done
}
