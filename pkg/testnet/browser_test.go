package testnet

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// needChromium skips when the browser is not installed (make deps installs
// it; under CI=true a skip fails the run).
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(ChromiumPath); err != nil {
		t.Skipf("browser test: %s not installed (apt-get install chromium)", ChromiumPath)
	}
}

// loginSession is the session cookie the login server hands out.
const loginSession = "0123456789abcdef"

// loginHandler is a site with a login form on /: POST /login with alice's
// password sets an HttpOnly SameSite=Strict session cookie and redirects
// (303) to /secret, which greets only a request with that cookie. The
// form's submit handler fills a hidden field, so the server sees whether
// the submission went through the submit event as a user's would.
func loginHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<!doctype html><title>login</title><h1 id="title">Sign in</h1>
<form method="post" action="/login" onsubmit="this.elements.js.value = 'yes'">
<input id="user" name="user" required> <input id="pass" name="pass" type="password" required>
<input name="js" type="hidden"> <button id="go" type="submit">Log in</button></form>`)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("user") != "alice" || r.FormValue("pass") != "s3cret" || r.FormValue("js") != "yes" {
			http.Error(w, "bad login", http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "session", Value: loginSession, Path: "/",
			HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/secret", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /secret", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil || subtle.ConstantTimeCompare([]byte(c.Value), []byte(loginSession)) != 1 {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `<!doctype html><p id="msg">login required</p>`)
			return
		}
		fmt.Fprint(w, `<!doctype html><p id="msg">welcome alice</p>`)
	})
	return mux
}

// serveInNS serves h on 127.0.0.1 of ns (the listener is made inside the
// namespace) until the test ends, and returns its base URL.
func serveInNS(t *testing.T, ns *NS, h http.Handler) string {
	t.Helper()
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// startBrowser starts Chromium in ns and closes it when the test ends,
// checking it left no process (in its group, with its profile, or in ns)
// and no profile directory behind.
func startBrowser(t *testing.T, ns *NS) *Browser {
	t.Helper()
	start := time.Now()
	b, err := StartBrowser(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chromium up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		start := time.Now()
		if err := b.Close(); err != nil {
			t.Error(err)
		}
		t.Logf("chromium closed in %v", time.Since(start).Round(time.Millisecond))
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if n := liveInGroup(b.cmd.Process.Pid); n != 0 {
			t.Errorf("%d live processes in chromium group %d after Close", n, b.cmd.Process.Pid)
		}
		if out, err := exec.Command("pgrep", "-f", b.dir).Output(); err == nil {
			t.Errorf("processes with profile %s after Close: %s", b.dir, out)
		}
		if out, _ := exec.Command("ip", "netns", "pids", ns.Name).Output(); len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("processes left in %s: %s", ns.Name, out)
		}
		if _, err := os.Stat(b.dir); !os.IsNotExist(err) {
			t.Errorf("profile %s after Close: %v", b.dir, err)
		}
	})
	return b
}

// browserNS is a fresh namespace that the test checks is gone at its end.
func browserNS(t *testing.T) *NS {
	t.Helper()
	var ns *NS
	t.Cleanup(func() { // registered first, so it runs after ns.Close
		if ns == nil {
			return
		}
		if list, err := exec.Command("ip", "netns", "list").Output(); err != nil || nsListed(list, ns.Name) {
			t.Errorf("namespace %s still listed after Close (%v)", ns.Name, err)
		}
	})
	ns = newNS(t, "web")
	return ns
}

func TestBrowserLogin(t *testing.T) {
	NeedKernel(t)
	needChromium(t)
	start := time.Now()
	ns := browserNS(t)
	base := serveInNS(t, ns, loginHandler())
	b := startBrowser(t, ns)
	p, err := b.NewPage()
	if err != nil {
		t.Fatal(err)
	}
	wantText(t, p, base+"/secret", "login required")

	if err := p.Navigate(base + "/"); err != nil {
		t.Fatal(err)
	}
	if err := p.Fill("#user", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := p.Fill("#pass", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := p.Click("#go"); err != nil {
		t.Fatal(err)
	}
	var path string
	if err := p.Eval("location.pathname", &path); err != nil || path != "/secret" {
		t.Fatalf("after login at %q (%v), want /secret", path, err)
	}
	if got, err := p.Text("#msg"); err != nil || got != "welcome alice" {
		t.Fatalf("after login #msg = %q (%v), want welcome alice", got, err)
	}
	checkSessionCookie(t, b, p)
	wantText(t, p, base+"/secret", "welcome alice") // the cookie is kept

	shot := filepath.Join(t.TempDir(), "secret.png")
	if err := p.Screenshot(shot, 640, 480); err != nil {
		t.Fatal(err)
	}
	checkPNG(t, shot, 640, 480)
	if err := p.Close(); err != nil {
		t.Error(err)
	}
	t.Logf("login flow in %v", time.Since(start).Round(time.Millisecond))
}

// wantText navigates to url and checks the text of #msg.
func wantText(t *testing.T, p *Page, url, want string) {
	t.Helper()
	if err := p.Navigate(url); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Text("#msg"); err != nil || got != want {
		t.Fatalf("%s: #msg = %q (%v), want %q", url, got, err, want)
	}
}

// checkSessionCookie checks the browser keeps the session cookie as the
// server set it, and hides it from scripts.
func checkSessionCookie(t *testing.T, b *Browser, p *Page) {
	t.Helper()
	var jsCookies string
	if err := p.Eval("document.cookie", &jsCookies); err != nil || jsCookies != "" {
		t.Errorf("document.cookie = %q (%v), want empty: the cookie is HttpOnly", jsCookies, err)
	}
	cookies, err := b.Cookies()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		if c.Name == "session" {
			if c.Value != loginSession || !c.HTTPOnly || c.SameSite != "Strict" || c.Domain != "127.0.0.1" {
				t.Errorf("session cookie %+v", c)
			}
			return
		}
	}
	t.Errorf("no session cookie in %+v", cookies)
}

func checkPNG(t *testing.T, path string, width, height int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if cfg.Width != width || cfg.Height != height {
		t.Errorf("%s is %dx%d, want %dx%d", path, cfg.Width, cfg.Height, width, height)
	}
}

func TestBrowserErrors(t *testing.T) {
	NeedKernel(t)
	needChromium(t)
	ns := browserNS(t)
	base := serveInNS(t, ns, loginHandler())
	b := startBrowser(t, ns)
	p, err := b.NewPage()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Navigate(base + "/"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := p.Eval("new Promise(r => setTimeout(() => r(1 + 2), 10))", &n); err != nil || n != 3 {
		t.Errorf("awaited eval = %d (%v), want 3", n, err)
	}
	for js, want := range map[string]string{
		`throw new Error("boom")`:               "Error: boom",
		`Promise.reject(new TypeError("nope"))`: "TypeError: nope",
		`throw "plain"`:                         `"plain"`,
		`document.querySelector("#none").x`:     "TypeError",
	} {
		if err := p.Eval(js, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Eval(%s) = %v, want an error with %q", js, err, want)
		}
	}
	if _, err := p.Text("#none"); err == nil || !strings.Contains(err.Error(), "no element matches") {
		t.Errorf("Text(#none) = %v", err)
	}
	if err := p.Click("#none"); err == nil || !strings.Contains(err.Error(), "no element matches") {
		t.Errorf("Click(#none) = %v", err)
	}
	if err := p.WaitFor("window.never", 200*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor(never) = %v, want a deadline error", err)
	}
	// A submit the form's validation stops is no navigation: Click times out.
	p.Timeout = 500 * time.Millisecond
	if err := p.Click("#go"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Click on an invalid form = %v, want a deadline error", err)
	}
	p.Timeout = DefaultPageTimeout
	if err := p.Navigate(closedPort(t, ns)); err == nil || !strings.Contains(err.Error(), "ERR_CONNECTION_REFUSED") {
		t.Errorf("Navigate to a closed port = %v", err)
	}
}

// closedPort is the URL of a port of ns's 127.0.0.1 nothing listens on.
func closedPort(t *testing.T, ns *NS) string {
	t.Helper()
	var addr string
	err := ns.Do(func() error {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		addr = ln.Addr().String()
		return ln.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + "/"
}

func TestBrowserStartFails(t *testing.T) {
	NeedKernel(t)
	ns := browserNS(t)
	old := ChromiumPath
	ChromiumPath = "/nonexistent/chromium"
	t.Cleanup(func() { ChromiumPath = old })
	b, err := StartBrowser(ns)
	if err == nil {
		_ = b.Close()
		t.Fatal("StartBrowser with a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "exited before listening") {
		t.Errorf("StartBrowser = %v", err)
	}
	if err := (*Browser)(nil).Close(); err != nil {
		t.Errorf("nil Close = %v", err)
	}
}
