// Package console is tapfw's web console: pages and a JSON API that show
// what is installed (taps, their rules and counters, a packet's verdict,
// the NFLOG lines, a chart of the counters) and change the host-wide
// parts of the base config (the host firewall, the named sets, the
// security groups) as tapfw apply does. It holds no state but its
// sessions and the last minutes of counters: the kernel and the config
// file are the state. Every request but for the static assets needs the
// token; pages are rendered
// on the server (html/template), and every asset is embedded.
package console

import (
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/explain"
	"github.com/tapfw/tapfw/pkg/inspect"
)

// Host is what the console reads and changes: the installed firewall of
// one network namespace and its base config. The plugin implements it
// with its backend; a method may be called from any goroutine, one at a
// time.
type Host interface {
	// Backend names the backend in use (nftables or iptables).
	Backend() string
	// Taps lists the installed taps, as tapfw list --json.
	Taps() ([]inspect.Tap, error)
	// Tap is one tap (a valid interface name) and its rules, as tapfw
	// show --json; ErrNotFound when it has no firewall.
	Tap(name string) (inspect.Tap, []inspect.Rule, error)
	// Explain walks a packet as tapfw explain does; a query it cannot
	// answer as asked is a *Refused.
	Explain(q Query) (Explained, error)
	// Apply brings the host to a base config (data, read as the file
	// base) as tapfw apply --config does, or with dryRun says what it
	// would change; it returns apply's lines, even with an error. A
	// config apply refuses before changing anything is a *Refused.
	Apply(base string, data []byte, dryRun bool) ([]string, error)
	// Check validates a base config as Apply does, without reading or
	// changing the kernel: a refused one is a *Refused.
	Check(base string, data []byte) error
}

// ErrNotFound is a tap with no firewall installed.
var ErrNotFound = errors.New("no firewall installed")

// Refused is a query or an edit refused before anything changed.
type Refused struct{ Err error }

func (r *Refused) Error() string { return r.Err.Error() }
func (r *Refused) Unwrap() error { return r.Err }

// Field is the config field the refusal is about, when it names one.
func (r *Refused) Field() string {
	var e *config.Error
	if errors.As(r.Err, &e) {
		return e.Field
	}
	return ""
}

// Query is what tapfw explain's flags ask, with their names and defaults
// (queryFrom reads it from a form or URL).
type Query struct {
	Tap, Dir, Proto, Src, Dst string
	SPort, DPort              int
	ICMPType, State, Peer     string
	HopLimit                  int
}

// Explained is tapfw explain --json's answer; Text is what it prints.
type Explained struct {
	Packet explain.Packet `json:"packet"`
	explain.Result
	Text string `json:"-"`
}

// Options configure a console.
type Options struct {
	// Config is the base config file the edits change.
	Config string
	// Token is what every request must present.
	Token string
	// ReadOnly refuses every change with 403.
	ReadOnly bool
	// Sample is how often the chart samples the counters (default 5s);
	// History how long it keeps them (default 10 minutes).
	Sample, History time.Duration
	// Log opens the NFLOG group the config logs to (nil: nflog.Listen).
	Log func(group uint16) (LogConn, error)
}

// Server is one console; Handler serves it, Close stops its background
// work.
type Server struct {
	host  Host
	opt   Options
	pages map[string]*template.Template

	// hostMu makes the host's calls one at a time; editMu makes an edit's
	// read, check, write and apply of the config file one step.
	hostMu, editMu sync.Mutex
	backend        string
	sessions       *sessions
	// key signs the files previews show (sign).
	key   []byte
	chart *history
	taps  tapsRead
	log   *logTail
	stop  chan struct{}
	done  sync.WaitGroup
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// New makes a console for host and starts sampling its counters and
// reading its log.
func New(host Host, opt Options) (*Server, error) {
	if opt.Token == "" {
		return nil, errors.New("console: no token")
	}
	if opt.Sample <= 0 {
		opt.Sample = 5 * time.Second
	}
	if opt.History <= 0 {
		opt.History = 10 * time.Minute
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	s := &Server{host: host, opt: opt, pages: pages, sessions: newSessions(), key: key, backend: host.Backend(),
		chart: newHistory(int(opt.History / opt.Sample)), stop: make(chan struct{})}
	s.log = newLogTail(opt.Log)
	s.done.Add(2)
	go s.sampleLoop()
	go s.logLoop()
	return s, nil
}

// Close stops sampling and reading the log.
func (s *Server) Close() {
	close(s.stop)
	s.done.Wait()
	s.log.close()
}

// maxBody bounds a request's body: a whole config at most.
const maxBody = config.MaxConfigSize

// Handler is the console's pages, API and assets, each behind the token.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	// The assets need no token (the login page uses them); they are the
	// same for everyone, and no directory is listed.
	files := http.StripPrefix("/static/", http.FileServerFS(static))
	mux.Handle("GET /static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /login", s.loginPage)
	mux.HandleFunc("POST /login", s.login)

	for pattern, h := range map[string]func(*request){
		"GET /{$}":               s.tapsPage,
		"GET /taps/{tap}":        s.tapPage,
		"GET /explain":           s.explainPage,
		"GET /host":              s.hostPage,
		"GET /sets":              s.setsPage,
		"GET /groups":            s.groupsPage,
		"GET /rule":              s.rulePage,
		"GET /log":               s.logPage,
		"GET /chart":             s.chartPage,
		"GET /chart.svg":         s.chartSVG,
		"GET /api/taps":          s.apiTaps,
		"GET /api/taps/{tap}":    s.apiTap,
		"GET /api/explain":       s.apiExplain,
		"GET /api/host":          s.apiGetSection,
		"GET /api/sets/{name}":   s.apiGetSection,
		"GET /api/groups/{name}": s.apiGetSection,
	} {
		mux.Handle(pattern, s.authed(h, false))
	}
	for pattern, h := range map[string]func(*request){
		"POST /logout":           s.logout,
		"POST /preview":          s.preview,
		"POST /apply":            s.applyPage,
		"PUT /api/host":          s.apiPutSection,
		"PUT /api/sets/{name}":   s.apiPutSection,
		"PUT /api/groups/{name}": s.apiPutSection,
	} {
		mux.Handle(pattern, s.authed(h, true))
	}
	return secureHeaders(mux)
}

// secureHeaders keeps pages from being framed, sniffed, cached or given
// anything but their own assets.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(w, r)
	})
}
