package console

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/model"
)

// Edits of the base config. A page's edit is two steps: POST /preview
// works out the new file from the current one and the form, and shows
// what tapfw apply --dry-run says it would change; POST /apply brings
// the host to that file. An API PUT does both at once. Either way the
// file is first checked whole (a refused one changes nothing), then
// written atomically (the old one kept as FILE.prev), then applied; if
// the kernel refuses, the old file is put back. An edit names the
// version of the file it started from: if the file changed since, it
// is refused with 409, so no edit is lost to another.

// configFile is the base config as read, and its version.
type configFile struct {
	data    []byte
	version string
	exists  bool
}

// noFile is the version of a base config that does not exist.
const noFile = "none"

func (s *Server) readConfig() (configFile, error) {
	data, err := os.ReadFile(s.opt.Config)
	if errors.Is(err, os.ErrNotExist) {
		return configFile{data: []byte("{}\n"), version: noFile}, nil
	}
	if err != nil {
		return configFile{version: noFile}, fmt.Errorf("reading %s: %w", s.opt.Config, err)
	}
	return configFile{data: data, version: versionOf(data), exists: true}, nil
}

func versionOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:12])
}

// errConflict is an edit of a file that changed since it was read.
var errConflict = errors.New("the config file changed since this page was loaded: reload it and edit again; nothing changed")

// commit checks data whole, writes it and applies it, if the file is
// still at version. It returns apply's lines, the file's new version,
// and the HTTP status of its error. If the kernel refuses, the old file
// is put back and applied again, so that file and kernel agree.
func (s *Server) commit(data []byte, version string) (lines []string, newVersion string, status int, err error) {
	s.editMu.Lock()
	defer s.editMu.Unlock()
	cur, err := s.readConfig()
	if err != nil {
		return nil, "", http.StatusInternalServerError, err
	}
	if version != cur.version {
		return nil, "", http.StatusConflict, errConflict
	}
	if err := s.call(func() error { return s.host.Check(s.opt.Config, data) }); err != nil {
		var r *Refused
		if errors.As(err, &r) {
			return nil, "", http.StatusBadRequest, err
		}
		return nil, "", http.StatusInternalServerError, err
	}
	prev, prevErr := os.ReadFile(s.opt.Config + config.PrevSuffix)
	if err := config.WriteFile(s.opt.Config, data); err != nil {
		return nil, "", http.StatusInternalServerError, err
	}
	err = s.call(func() (err error) { lines, err = s.host.Apply(s.opt.Config, data, false); return err })
	s.edited()
	if err == nil {
		return lines, versionOf(data), http.StatusOK, nil
	}
	err = fmt.Errorf("applying the new file: %w", err)
	if rerr := s.restore(cur, prev, prevErr == nil); rerr != nil {
		return lines, "", http.StatusInternalServerError, fmt.Errorf("%w; and putting the old file back: %v", err, rerr)
	}
	if !cur.exists {
		return lines, "", http.StatusInternalServerError, fmt.Errorf("%w; the new file is removed (there was none), the kernel may hold part of it: run tapfw apply", err)
	}
	var again []string
	aerr := s.call(func() (err error) { again, err = s.host.Apply(s.opt.Config, cur.data, false); return err })
	lines = append(lines, again...)
	if aerr != nil {
		return lines, "", http.StatusInternalServerError, fmt.Errorf("%w; the old file is back, but applying it again: %v", err, aerr)
	}
	return lines, "", http.StatusInternalServerError, fmt.Errorf("%w; the old file is back and applied again", err)
}

// restore puts back the file commit replaced, and the previous version
// that was beside it.
func (s *Server) restore(old configFile, prev []byte, hadPrev bool) error {
	if !old.exists {
		return os.Remove(s.opt.Config)
	}
	if err := os.Rename(s.opt.Config+config.PrevSuffix, s.opt.Config); err != nil {
		return err
	}
	if hadPrev {
		mode := os.FileMode(0o600)
		if fi, err := os.Stat(s.opt.Config); err == nil {
			mode = fi.Mode().Perm()
		}
		return os.WriteFile(s.opt.Config+config.PrevSuffix, prev, mode)
	}
	return nil
}

// dryRun is what applying data would change; a refused file is a 400.
func (s *Server) dryRun(data []byte) ([]string, int, error) {
	var lines []string
	err := s.call(func() (err error) { lines, err = s.host.Apply(s.opt.Config, data, true); return err })
	var r *Refused
	switch {
	case errors.As(err, &r):
		return nil, http.StatusBadRequest, err
	case err != nil:
		return nil, http.StatusInternalServerError, err
	}
	return lines, http.StatusOK, nil
}

// previewData is the preview of an edit: what it asked, what apply
// would change, and the new file to apply.
type previewData struct {
	What    string
	Lines   []string
	Diff    []string // the file's lines that change
	Path    string
	Config  string
	Version string
	Sig     string // sign(Version, Config)
	Back    string
	Applied bool
}

func (d previewData) title() (string, string) {
	if d.Applied {
		return "applied", ""
	}
	return "preview", ""
}

// preview works out the edit the form asks for and shows what it would
// change.
func (s *Server) preview(req *request) {
	f := req.r.PostForm
	cur, err := s.readConfig()
	if err != nil {
		req.serverError(err)
		return
	}
	if f.Get("version") != cur.version {
		req.fail(http.StatusConflict, errConflict, "")
		return
	}
	data, what, err := edit(cur.data, f)
	if err != nil {
		req.fail(http.StatusBadRequest, err, "")
		return
	}
	lines, status, err := s.dryRun(data)
	if err != nil {
		req.fail(status, err, "")
		return
	}
	s.render(req, http.StatusOK, "preview", previewData{What: what, Lines: lines, Diff: diff(string(cur.data), string(data)), Path: s.opt.Config,
		Config: string(data), Version: cur.version, Sig: s.sign(cur.version, data), Back: backOf(f.Get("back"))})
}

// applyPage applies the file a preview showed, and only that one.
func (s *Server) applyPage(req *request) {
	f := req.r.PostForm
	// A browser sends a textarea's lines ended by CRLF.
	data := []byte(strings.ReplaceAll(f.Get("config"), "\r\n", "\n"))
	if !hmac.Equal([]byte(f.Get("sig")), []byte(s.sign(f.Get("version"), data))) {
		req.fail(http.StatusBadRequest, errors.New("the file to apply is not the one the preview showed: preview the edit again; nothing changed"), "")
		return
	}
	lines, _, status, err := s.commit(data, f.Get("version"))
	if err != nil {
		req.fail(status, err, "", lines...)
		return
	}
	s.render(req, http.StatusOK, "preview", previewData{Lines: lines, Back: backOf(f.Get("back")), Applied: true})
}

// sign binds a preview's file to the version it was made from, so that
// /apply applies what the preview showed and checked.
func (s *Server) sign(version string, data []byte) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(version))
	m.Write([]byte{0})
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// backOf is a page of this console to go back to, "/" for anything else.
func backOf(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\\r\n") {
		return "/"
	}
	return s
}

// form is a submitted form's values.
type form interface{ Get(string) string }

// edit works out the file an edit form asks for, and says what it asks
// in words. The values are not checked here: apply checks the file.
func edit(data []byte, f form) ([]byte, string, error) {
	t := f.Get("target")
	if t == "" && f.Get("new") != "" { // the form of a new set or group
		t = f.Get("kind") + ":" + strings.TrimSpace(f.Get("name"))
	}
	target, err := targetOf(t)
	if err != nil {
		return nil, "", err
	}
	if f.Get("new") != "" {
		// A form that makes a set or group must not replace one.
		if have, err := config.Field(data, target.path...); err != nil || have != nil {
			return nil, "", &Refused{fmt.Errorf("%s: there is one already; edit it where it is listed", target.field())}
		}
	}
	switch op := f.Get("op"); op {
	case "rule-add", "rule-edit", "rule-remove", "rule-up", "rule-down":
		return editRule(data, target, op, f)
	case "section":
		return editSection(data, target, f.Get("json"))
	case "set-entries":
		if target.kind != "set" {
			return nil, "", &Refused{errors.New("target: set-entries edits a set")}
		}
		entries := json.RawMessage("[]")
		if list := splitList(f.Get("entries")); len(list) > 0 {
			entries, _ = json.Marshal(list)
		}
		out, err := config.SetField(data, entries, target.path...)
		return out, "set the entries of " + target.field(), err
	case "host-settings":
		return editHostSettings(data, f)
	default:
		return nil, "", &Refused{fmt.Errorf("op: %q is no edit", op)}
	}
}

// target is the part of the config an edit changes: the host section,
// a named set or a security group.
type target struct {
	kind string // host, set or group
	name string
	path []string
}

func (t target) field() string { return strings.Join(t.path, ".") }

// targetOf reads "host", "set:NAME" or "group:NAME".
func targetOf(s string) (target, error) {
	kind, name, _ := strings.Cut(s, ":")
	switch {
	case kind == "host" && name == "":
		return target{kind: kind, path: []string{"host"}}, nil
	case kind == "set" || kind == "group":
		if err := model.ValidateName(name, 0); err != nil {
			return target{}, &Refused{fmt.Errorf("%s name: %w", kind, err)}
		}
		top := "ipsets"
		if kind == "group" {
			top = "securityGroups"
		}
		return target{kind: kind, name: name, path: []string{top, name}}, nil
	}
	return target{}, &Refused{fmt.Errorf("target: %q is not host, set:NAME or group:NAME", s)}
}

// rulesPath is where a target's rules of direction dir are.
func (t target) rulesPath(dir string) []string {
	if t.kind == "host" {
		return []string{"host", "rules", dir}
	}
	return append(append([]string{}, t.path...), dir)
}

// editSection replaces the target's whole value with JSON text: empty
// or null removes it.
func editSection(data []byte, t target, text string) ([]byte, string, error) {
	text = strings.TrimSpace(text)
	if text == "" || text == "null" {
		out, err := config.SetField(data, nil, t.path...)
		return out, "remove " + t.field(), err
	}
	if !json.Valid([]byte(text)) {
		return nil, "", &Refused{fmt.Errorf("%s: the text is not JSON", t.field())}
	}
	out, err := config.SetField(data, json.RawMessage(text), t.path...)
	return out, "replace " + t.field(), err
}

// editRule adds, changes, removes or moves one rule of a rule list.
func editRule(data []byte, t target, op string, f form) ([]byte, string, error) {
	if t.kind == "set" {
		return nil, "", &Refused{errors.New("target: a set has no rules")}
	}
	dir := f.Get("dir")
	if dir != "in" && dir != "out" {
		return nil, "", &Refused{fmt.Errorf("dir: %q is not in or out", dir)}
	}
	at := t.rulesPath(dir)
	raw, err := config.Field(data, at...)
	if err != nil {
		return nil, "", err
	}
	var rules []json.RawMessage
	if raw != nil {
		if err := json.Unmarshal(raw, &rules); err != nil {
			return nil, "", &Refused{fmt.Errorf("%s: %w", strings.Join(at, "."), err)}
		}
	}
	i, err := strconv.Atoi(f.Get("index"))
	last := len(rules)
	if op == "rule-add" {
		last++
	}
	if err != nil || i < 1 || i > last {
		if op != "rule-add" || f.Get("index") != "" {
			return nil, "", &Refused{fmt.Errorf("index: %q is not a rule from 1 to %d", f.Get("index"), max(last, 1))}
		}
		i = last
	}
	rule, err := json.Marshal(ruleFrom(f))
	if err != nil {
		return nil, "", err
	}
	field := fmt.Sprintf("%s[%d]", strings.Join(at, "."), i-1)
	var what string
	switch op {
	case "rule-add":
		rules = append(rules[:i-1], append([]json.RawMessage{rule}, rules[i-1:]...)...)
		what = "add rule " + strconv.Itoa(i) + " to " + strings.Join(at, ".")
	case "rule-edit":
		rules[i-1], what = rule, "change "+field
	case "rule-remove":
		rules, what = append(rules[:i-1], rules[i:]...), "remove "+field
	case "rule-up", "rule-down":
		j := i - 2
		if op == "rule-down" {
			j = i
		}
		if j < 0 || j >= len(rules) {
			return nil, "", &Refused{fmt.Errorf("index: rule %d cannot move that way", i)}
		}
		rules[i-1], rules[j] = rules[j], rules[i-1]
		what = fmt.Sprintf("move %s to %d", field, j+1)
	}
	list, _ := json.Marshal(rules)
	out, err := config.SetField(data, list, at...)
	return out, what, err
}

// ruleFrom is the rule a rule form gives: a group check when it names a
// group, else the rule its fields say.
func ruleFrom(f form) config.Rule {
	v := func(k string) string { return strings.TrimSpace(f.Get(k)) }
	var enable *bool
	if v("disabled") != "" {
		off := false
		enable = &off
	}
	if g := v("group"); g != "" {
		return config.Rule{Group: g, Comment: v("comment"), Enable: enable}
	}
	return config.Rule{Action: v("action"), Macro: v("macro"), Proto: v("proto"), Source: v("source"), Dest: v("dest"),
		SPort: v("sport"), DPort: v("dport"), ICMPType: v("icmpType"), Iface: v("iface"),
		Log: config.LogOption(v("log")), Comment: v("comment"), Enable: enable}
}

// editHostSettings sets the host section's addresses, cluster hosts,
// management ports and protections from the settings form.
func editHostSettings(data []byte, f form) ([]byte, string, error) {
	out := data
	var err error
	for _, k := range []string{"ips", "clusterHosts", "managementPorts"} {
		var v json.RawMessage
		if list := splitList(f.Get(k)); len(list) > 0 {
			v, _ = json.Marshal(list)
		}
		if out, err = config.SetField(out, v, "host", k); err != nil {
			return nil, "", err
		}
	}
	// Each protection is written only when it is not the default.
	for _, p := range []struct {
		key string
		def bool
	}{{"allLocal", false}, {"noSmurfs", true}, {"tcpFlags", false}, {"allowInvalid", false}, {"synFlood", false}} {
		var v json.RawMessage
		if on := f.Get(p.key) != ""; on != p.def {
			v = json.RawMessage(strconv.FormatBool(on))
		}
		if out, err = config.SetField(out, v, "host", p.key); err != nil {
			return nil, "", err
		}
	}
	if raw, _ := config.Field(out, "host"); raw == nil {
		// A host section with nothing in it still guards the host.
		if out, err = config.SetField(out, json.RawMessage("{}"), "host"); err != nil {
			return nil, "", err
		}
	}
	return out, "set the host's addresses, cluster hosts, management ports and protections", nil
}

// splitList reads a list typed one per line or separated by commas or
// spaces.
func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' })
}

// ruleData is the form of one rule: to change rule Index of Dir of
// Target, or to add one (Index 0).
type ruleData struct {
	Target, Dir string
	Index       int
	Rule        config.Rule
	Version     string
	Back        string
}

func (ruleData) title() (string, string) { return "rule", "" }

// rulePage is the form to add a rule or change one.
func (s *Server) rulePage(req *request) {
	q := req.r.URL.Query()
	t, err := targetOf(q.Get("target"))
	if err != nil {
		req.fail(http.StatusBadRequest, err, "")
		return
	}
	d := ruleData{Target: q.Get("target"), Dir: q.Get("dir"), Back: "/host"}
	if t.kind == "group" {
		d.Back = "/groups"
	}
	if d.Dir != "in" && d.Dir != "out" {
		req.fail(http.StatusBadRequest, fmt.Errorf("dir: %q is not in or out", d.Dir), "")
		return
	}
	cur, err := s.readConfig()
	if err != nil {
		req.serverError(err)
		return
	}
	d.Version = cur.version
	if idx := q.Get("index"); idx != "" {
		raw, err := config.Field(cur.data, t.rulesPath(d.Dir)...)
		var rules []config.Rule
		if err == nil && raw != nil {
			err = json.Unmarshal(raw, &rules)
		}
		i, aerr := strconv.Atoi(idx)
		if err != nil || aerr != nil || i < 1 || i > len(rules) {
			req.fail(http.StatusNotFound, fmt.Errorf("index: %q is no rule of %s", idx, strings.Join(t.rulesPath(d.Dir), ".")), "")
			return
		}
		d.Index, d.Rule = i, rules[i-1]
	}
	s.render(req, http.StatusOK, "rule", d)
}
