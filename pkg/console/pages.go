package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/inspect"
	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
)

// The pages: each is templates/NAME.html, which defines "content" (and
// the fragments the page refreshes, fetched with ?part=NAME), inside
// templates/layout.html.

// page is what every page's template gets.
type page struct {
	Title    string
	Nav      string // the menu entry it is under
	LoggedIn bool
	CSRF     string
	ReadOnly bool
	Backend  string
	Data     any
}

var funcs = template.FuncMap{
	"counter": func(c netfilter.Counter) string { return fmt.Sprintf("%s / %s", human(c.Packets), humanBytes(c.Bytes)) },
	"verdicts": func(m map[string]*inspect.Verdicts, dir, what string) string {
		v := m[dir]
		if v == nil {
			return "0 / 0 B"
		}
		c := v.Accepted
		if what == "dropped" {
			c = v.Dropped
		}
		return fmt.Sprintf("%s / %s", human(c.Packets), humanBytes(c.Bytes))
	},
	"join": strings.Join,
	"add":  func(a, b int) int { return a + b },
	"list": func(s ...string) []string { return s },
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: odd arguments")
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, errors.New("dict: a key is not a string")
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
	"deref": func(b *bool) bool { return b != nil && *b },
	"hostRules": func(h *config.Host, dir string) []config.Rule {
		switch {
		case h == nil:
			return nil
		case dir == "in":
			return h.Rules.In
		}
		return h.Rules.Out
	},
	"toJSON": func(v any) (string, error) {
		if h, ok := v.(*config.Host); ok && h == nil {
			return "", nil
		}
		b, err := json.MarshalIndent(v, "", "  ")
		return string(b), err
	},
	"navURL": func(n string) string {
		if n == "taps" {
			return "/"
		}
		return "/" + n
	},
	"diffClass": func(l string) string {
		return map[byte]string{'+': "added", '-': "removed"}[l[0]]
	},
	"navName": func(n string) string { return navNames[n] },
	"opName": func(op string) string {
		return map[string]string{"rule-up": "up", "rule-down": "down", "rule-remove": "remove"}[op]
	},
}

var navNames = map[string]string{"taps": "Taps", "explain": "Explain", "host": "Host firewall", "sets": "Named sets",
	"groups": "Security groups", "log": "Log", "chart": "Chart"}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "rulelist" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/rulelist.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes page name with data, or with ?part=X only its fragment X.
func (s *Server) render(req *request, status int, name string, data any) {
	t := s.pages[name]
	p := page{Title: name, Nav: name, LoggedIn: name != "login",
		CSRF: req.csrf, ReadOnly: s.opt.ReadOnly, Backend: s.backend, Data: data}
	if tt, ok := data.(titled); ok {
		p.Title, p.Nav = tt.title()
	}
	tmpl := "layout"
	if part := req.r.URL.Query().Get("part"); part != "" && t.Lookup(part) != nil {
		tmpl = part
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, tmpl, p); err != nil {
		http.Error(req.w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	req.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	req.w.WriteHeader(status)
	_, _ = req.w.Write(b.Bytes())
}

// titled is page data that names its title and menu entry.
type titled interface{ title() (title, nav string) }

// errorData is an error page: what went wrong, the field when it names
// one, the lines apply printed before it, and where to go back to.
type errorData struct {
	Status int
	Error  string
	Field  string
	Lines  []string
	Back   string
}

func (errorData) title() (string, string) { return "refused", "" }

// fail answers with an error: JSON for the API, a page for a page.
func (req *request) fail(status int, err error, field string, lines ...string) {
	if field == "" {
		var r *Refused
		if errors.As(err, &r) {
			field = r.Field()
		}
	}
	if isAPI(req.r) || req.sessionID == "" && req.r.Header.Get("Accept") == "application/json" {
		req.writeJSON(status, apiError{Error: err.Error(), Field: field, Output: lines})
		return
	}
	req.w.Header().Set("Content-Type", "text/html; charset=utf-8")
	req.w.WriteHeader(status)
	back := backOf(req.r.PostForm.Get("back"))
	t := errorTemplate
	_ = t.Execute(req.w, errorData{Status: status, Error: err.Error(), Field: field, Lines: lines, Back: back})
}

// errorTemplate is the page of an error, outside the layout: an error
// may come before the session is known.
var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tapfw: refused</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main><h1>Refused ({{.Status}})</h1><p class="error" id="error">{{.Error}}</p>
{{if .Field}}<p>Field: <code id="field">{{.Field}}</code></p>{{end}}
{{if .Lines}}<p>What apply printed:</p><pre id="lines">{{range .Lines}}{{.}}
{{end}}</pre>{{end}}
<p>{{if lt .Status 500}}Nothing changed. {{end}}<a href="{{.Back}}">Back</a></p></main></body></html>
`))

// serverError answers 500 for a failure of the host (reading the
// firewall, a transaction the kernel refused).
func (req *request) serverError(err error) { req.fail(http.StatusInternalServerError, err, "") }

type tapsData struct {
	Taps []inspect.Tap
	// Every is how often the page refreshes them, in ms.
	Every int64
}

func (tapsData) title() (string, string) { return "taps", "taps" }

func (s *Server) tapsPage(req *request) {
	taps, err := s.readTaps()
	if err != nil {
		req.serverError(fmt.Errorf("reading the installed firewall: %w", err))
		return
	}
	s.render(req, http.StatusOK, "taps", tapsData{Taps: taps, Every: s.refreshEvery().Milliseconds()})
}

type tapData struct {
	Tap    inspect.Tap
	Groups []string
	Rules  []inspect.Rule
}

func (d tapData) title() (string, string) { return "tap " + d.Tap.Name, "taps" }

func (s *Server) tapPage(req *request) {
	var d tapData
	var status int
	var err error
	if d.Tap, d.Rules, status, err = s.readTap(req.r.PathValue("tap")); err != nil {
		req.fail(status, err, "")
		return
	}
	for _, r := range d.Rules {
		if r.Shared && r.Name != "" && !slices.Contains(d.Groups, r.Name) {
			d.Groups = append(d.Groups, r.Name)
		}
	}
	s.render(req, http.StatusOK, "tap", d)
}

// readTap is the tap and its rules, or the HTTP status of why not: 400
// for a name no tap can have, 404 for a tap without a firewall.
func (s *Server) readTap(name string) (inspect.Tap, []inspect.Rule, int, error) {
	if err := model.ValidateIfName(name); err != nil {
		return inspect.Tap{}, nil, http.StatusBadRequest, &Refused{fmt.Errorf("tap: %w", err)}
	}
	var t inspect.Tap
	var rules []inspect.Rule
	err := s.call(func() (err error) { t, rules, err = s.host.Tap(name); return err })
	switch {
	case errors.Is(err, ErrNotFound):
		return t, nil, http.StatusNotFound, fmt.Errorf("%s has no firewall installed", name)
	case err != nil:
		return t, nil, http.StatusInternalServerError, fmt.Errorf("reading the installed firewall: %w", err)
	}
	return t, rules, http.StatusOK, nil
}

type explainData struct {
	Q      Query
	Asked  bool
	Answer *Explained
	Error  string
	Taps   []string
}

func (explainData) title() (string, string) { return "explain", "explain" }

func (s *Server) explainPage(req *request) {
	d := explainData{Q: defaultQuery()}
	if taps, err := s.readTaps(); err == nil {
		for _, t := range taps {
			d.Taps = append(d.Taps, t.Name)
		}
	}
	status := http.StatusOK
	if req.r.URL.Query().Has("tap") {
		d.Asked = true
		q, err := queryFrom(req.r.URL.Query())
		d.Q = q
		if err == nil {
			var ans Explained
			err = s.call(func() (err error) { ans, err = s.host.Explain(q); return err })
			d.Answer = &ans
		}
		if err != nil {
			d.Answer, d.Error = nil, err.Error()
			status = http.StatusBadRequest
			var r *Refused
			if !errors.As(err, &r) {
				status = http.StatusInternalServerError
			}
		}
	}
	s.render(req, status, "explain", d)
}

func defaultQuery() Query {
	return Query{Proto: "tcp", SPort: 40000, State: "NEW", HopLimit: 64}
}

// queryFrom reads a query from tapfw explain's flag names (tap, dir,
// proto, src, dst, sport, dport, icmp-type, state, hop-limit, peer),
// with its defaults.
func queryFrom(v map[string][]string) (Query, error) {
	get := func(k string) string {
		if vs := v[k]; len(vs) > 0 {
			return strings.TrimSpace(vs[0])
		}
		return ""
	}
	q := defaultQuery()
	q.Tap, q.Dir, q.Src, q.Dst, q.ICMPType, q.Peer = get("tap"), get("dir"), get("src"), get("dst"), get("icmp-type"), get("peer")
	if p := get("proto"); p != "" {
		q.Proto = p
	}
	if st := get("state"); st != "" {
		q.State = st
	}
	for _, n := range []struct {
		key string
		to  *int
		max int
	}{{"sport", &q.SPort, 65535}, {"dport", &q.DPort, 65535}, {"hop-limit", &q.HopLimit, 255}} {
		s := get(n.key)
		if s == "" {
			continue
		}
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i > n.max {
			return q, &Refused{fmt.Errorf("%s: %q is not a number from 0 to %d", n.key, s, n.max)}
		}
		*n.to = i
	}
	if err := model.ValidateIfName(q.Tap); err != nil {
		return q, &Refused{fmt.Errorf("tap: %w", err)}
	}
	if q.Dir != "in" && q.Dir != "out" {
		return q, &Refused{fmt.Errorf("dir: %q is not in or out", q.Dir)}
	}
	return q, nil
}

// configData is a page that shows (and edits) the base config: the
// config as parsed, the file's version, and an error reading it.
type configData struct {
	Conf    *config.NetConf
	Version string
	Error   string
	// Sets and Groups are the config's names, sorted.
	Sets, Groups []string
	Path         string
	nav          string
}

func (d configData) title() (string, string) { return d.nav, d.nav }

// configPage renders a page of the base config.
func (s *Server) configPage(req *request, name string) {
	d := configData{nav: name, Path: s.opt.Config}
	f, err := s.readConfig()
	if err == nil {
		_, d.Conf, err = config.MergeBase(s.opt.Config, f.data)
	}
	if err != nil {
		d.Error = err.Error()
		d.Conf = &config.NetConf{}
	}
	d.Version = f.version
	for n := range d.Conf.IPSets {
		d.Sets = append(d.Sets, n)
	}
	for n := range d.Conf.SecurityGroups {
		d.Groups = append(d.Groups, n)
	}
	slices.Sort(d.Sets)
	slices.Sort(d.Groups)
	s.render(req, http.StatusOK, name, d)
}

func (s *Server) hostPage(req *request)   { s.configPage(req, "host") }
func (s *Server) setsPage(req *request)   { s.configPage(req, "sets") }
func (s *Server) groupsPage(req *request) { s.configPage(req, "groups") }

// call runs f, one host call at a time.
func (s *Server) call(f func() error) error {
	s.hostMu.Lock()
	defer s.hostMu.Unlock()
	return f()
}

func human(n uint64) string {
	switch {
	case n >= 10_000_000:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 10_000:
		return fmt.Sprintf("%dk", n/1_000)
	}
	return strconv.FormatUint(n, 10)
}

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
