package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/inspect"
)

// The JSON API: the same data as the CLI's --json, and the base
// config's host section, named sets and security groups in the config's
// own shape, the same for GET and PUT (null: there is none; a PUT of
// null removes it). A GET answers the file's version in ETag; a PUT
// with If-Match is refused with 409 when the file has another.

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	// Output is what apply printed before it failed.
	Output []string `json:"output,omitempty"`
}

// applyAnswer is a PUT's answer: what apply printed.
type applyAnswer struct {
	Output []string `json:"output"`
}

func (req *request) writeJSON(status int, v any) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(req.w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.w.Header().Set("Content-Type", "application/json")
	req.w.WriteHeader(status)
	_, _ = req.w.Write(b.Bytes())
}

func (s *Server) apiTaps(req *request) {
	taps, err := s.readTaps()
	if err != nil {
		req.serverError(fmt.Errorf("reading the installed firewall: %w", err))
		return
	}
	if taps == nil {
		taps = []inspect.Tap{}
	}
	req.writeJSON(http.StatusOK, taps)
}

// apiTap is tapfw show --json.
func (s *Server) apiTap(req *request) {
	t, rules, status, err := s.readTap(req.r.PathValue("tap"))
	if err != nil {
		req.fail(status, err, "")
		return
	}
	req.writeJSON(http.StatusOK, struct {
		inspect.Tap
		RuleList []inspect.Rule `json:"ruleList"`
	}{t, rules})
}

// apiExplain is tapfw explain --json, asked with its flags' names.
func (s *Server) apiExplain(req *request) {
	q, err := queryFrom(req.r.URL.Query())
	if err != nil {
		req.fail(http.StatusBadRequest, err, "")
		return
	}
	var ans Explained
	err = s.call(func() (err error) { ans, err = s.host.Explain(q); return err })
	var r *Refused
	switch {
	case errors.As(err, &r):
		req.fail(http.StatusBadRequest, err, "")
	case err != nil:
		req.serverError(fmt.Errorf("reading the installed firewall: %w", err))
	default:
		req.writeJSON(http.StatusOK, ans)
	}
}

// sectionOf is the part of the config an API path names.
func sectionOf(req *request) (target, error) {
	switch {
	case req.r.URL.Path == "/api/host":
		return targetOf("host")
	case strings.HasPrefix(req.r.URL.Path, "/api/sets/"):
		return targetOf("set:" + req.r.PathValue("name"))
	}
	return targetOf("group:" + req.r.PathValue("name"))
}

func (s *Server) apiGetSection(req *request) {
	t, err := sectionOf(req)
	if err != nil {
		req.fail(http.StatusBadRequest, err, "")
		return
	}
	cur, err := s.readConfig()
	if err != nil {
		req.serverError(err)
		return
	}
	raw, err := configFieldOf(cur.data, t)
	if err != nil {
		req.serverError(err)
		return
	}
	req.w.Header().Set("ETag", `"`+cur.version+`"`)
	req.writeJSON(http.StatusOK, raw)
}

// configFieldOf is the target's value in the file, null when absent.
func configFieldOf(data []byte, t target) (json.RawMessage, error) {
	raw, err := config.Field(data, t.path...)
	if raw == nil {
		raw = json.RawMessage("null")
	}
	return raw, err
}

// apiPutSection replaces a part of the config with the body and applies
// the file.
func (s *Server) apiPutSection(req *request) {
	t, err := sectionOf(req)
	if err != nil {
		req.fail(http.StatusBadRequest, err, "")
		return
	}
	body, err := io.ReadAll(req.r.Body)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		req.fail(http.StatusRequestEntityTooLarge, fmt.Errorf("the request is larger than %d bytes: nothing changed", tooBig.Limit), "")
		return
	case err != nil:
		req.fail(http.StatusBadRequest, fmt.Errorf("reading the request: %w", err), "")
		return
	}
	cur, err := s.readConfig()
	if err != nil {
		req.serverError(err)
		return
	}
	if m := req.r.Header.Get("If-Match"); m != "" && strings.Trim(m, `"`) != cur.version {
		req.fail(http.StatusConflict, errConflict, "")
		return
	}
	data, _, err := editSection(cur.data, t, string(body))
	if err != nil {
		req.fail(http.StatusBadRequest, err, t.field())
		return
	}
	lines, version, status, err := s.commit(data, cur.version)
	if err != nil {
		req.fail(status, err, "", lines...)
		return
	}
	req.w.Header().Set("ETag", `"`+version+`"`)
	req.writeJSON(http.StatusOK, applyAnswer{Output: lines})
}
