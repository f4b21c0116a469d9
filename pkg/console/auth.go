package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Who may use the console: whoever presents the token, as
// "Authorization: Bearer TOKEN" (the API, scripts) or once to POST /login,
// which gives the browser a session cookie. A cookie rides along on any
// request the browser makes, so a change made with one must also carry
// its session's CSRF token; a Bearer request cannot be forged that way.

const (
	cookieName = "tapfw_session"
	// csrfField is the form field (or X-CSRF-Token header) of the CSRF
	// token.
	csrfField = "csrf"
	// sessionTTL is how long a login lasts; maxSessions bounds how many
	// are kept (the oldest go first).
	sessionTTL  = 12 * time.Hour
	maxSessions = 256
)

// LoadToken reads the token from path, or creates the file (mode 0600)
// with a new random token if there is none; created says which. A token
// file others may read, or one that is not a regular file, is refused.
func LoadToken(path string) (token string, created bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		token, err = createToken(path)
		return token, err == nil, err
	}
	if err != nil {
		return "", false, fmt.Errorf("reading the token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", false, fmt.Errorf("reading the token file: %w", err)
	}
	switch {
	case !fi.Mode().IsRegular():
		return "", false, fmt.Errorf("the token file %s is not a regular file", path)
	case fi.Mode().Perm()&0o077 != 0:
		return "", false, fmt.Errorf("the token file %s has mode %04o: others may read it; chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return "", false, fmt.Errorf("reading the token file: %w", err)
	}
	token = strings.TrimSpace(string(data))
	if len(token) < 16 {
		return "", false, fmt.Errorf("the token in %s is shorter than 16 characters", path)
	}
	return token, false, nil
}

// createToken writes a new token to path, whole or not at all: to a
// file of its own first, then linked into place (which fails if another
// start made one meanwhile).
func createToken(path string) (string, error) {
	token := randomHex(32)
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return "", fmt.Errorf("creating the token file: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.WriteString(token + "\n")
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(f.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("creating the token file: %w", err)
	}
	return token, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// session is one login: its CSRF token and when it ends.
type session struct {
	csrf    string
	expires time.Time
}

type sessions struct {
	mu   sync.Mutex
	byID map[string]session
}

func newSessions() *sessions { return &sessions{byID: map[string]session{}} }

// start makes a session and returns its ID.
func (ss *sessions) start() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	now := time.Now()
	for id, s := range ss.byID {
		if now.After(s.expires) {
			delete(ss.byID, id)
		}
	}
	for len(ss.byID) >= maxSessions {
		oldest := ""
		for id, s := range ss.byID {
			if oldest == "" || s.expires.Before(ss.byID[oldest].expires) {
				oldest = id
			}
		}
		delete(ss.byID, oldest)
	}
	id := randomHex(32)
	ss.byID[id] = session{csrf: randomHex(32), expires: now.Add(sessionTTL)}
	return id
}

func (ss *sessions) get(id string) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byID[id]
	if !ok || time.Now().After(s.expires) {
		return session{}, false
	}
	return s, true
}

func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, id)
}

// request is one authenticated request: csrf is its session's CSRF
// token ("" for a Bearer request).
type request struct {
	w         http.ResponseWriter
	r         *http.Request
	sessionID string
	csrf      string
}

func (s *Server) sameToken(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(s.opt.Token)) == 1
}

// authed serves h to requests with the token or a session, and only
// then: 401 without either (the login page for a page, JSON for the
// API). A change (changes) needs a cookie request's CSRF token (403
// without it) and is refused with 403 by a read-only console.
func (s *Server) authed(h func(*request), changes bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := &request{w: w, r: r}
		bearer, hasBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch {
		case hasBearer && s.sameToken(strings.TrimSpace(bearer)):
		case hasBearer:
			s.unauthorized(req)
			return
		default:
			c, err := r.Cookie(cookieName)
			var sess session
			ok := err == nil
			if ok {
				sess, ok = s.sessions.get(c.Value)
			}
			if !ok {
				s.unauthorized(req)
				return
			}
			req.sessionID, req.csrf = c.Value, sess.csrf
		}
		if changes && !req.readForm() {
			return
		}
		if changes && req.sessionID != "" && !s.csrfOK(r, req.csrf) {
			req.fail(http.StatusForbidden, errors.New("the form's CSRF token is missing or not this session's: reload the page"), "")
			return
		}
		if changes && s.opt.ReadOnly && r.URL.Path != "/logout" {
			req.fail(http.StatusForbidden, errors.New("the console is read-only (--read-only): nothing changed"), "")
			return
		}
		h(req)
	})
}

// readForm reads a POST's form; false when it has answered already: 413
// for a body over the limit, 400 for one it cannot read.
func (req *request) readForm() bool {
	if req.r.Method != http.MethodPost {
		return true
	}
	err := req.r.ParseForm()
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		req.fail(http.StatusRequestEntityTooLarge, fmt.Errorf("the request is larger than %d bytes: nothing changed", tooBig.Limit), "")
		return false
	case err != nil:
		req.fail(http.StatusBadRequest, fmt.Errorf("reading the form: %w", err), "")
		return false
	}
	return true
}

func (s *Server) csrfOK(r *http.Request, want string) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" && r.Method == http.MethodPost {
		got = r.PostForm.Get(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

func (s *Server) unauthorized(req *request) {
	req.w.Header().Set("WWW-Authenticate", `Bearer realm="tapfw"`)
	if isAPI(req.r) {
		req.writeJSON(http.StatusUnauthorized, apiError{Error: "the token is missing or wrong"})
		return
	}
	s.render(req, http.StatusUnauthorized, "login", loginData{})
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

type loginData struct{ Error string }

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.render(&request{w: w, r: r}, http.StatusOK, "login", loginData{})
}

// login checks the token from the form and starts a session.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	req := &request{w: w, r: r}
	if !req.readForm() {
		return
	}
	if !s.sameToken(strings.TrimSpace(r.PostFormValue("token"))) {
		// Slows down guessing (the token has 256 bits: a guard, not
		// the defence).
		time.Sleep(time.Second)
		w.Header().Set("WWW-Authenticate", `Bearer realm="tapfw"`)
		s.render(req, http.StatusUnauthorized, "login", loginData{Error: "That is not the token."})
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.sessions.start(), Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil, MaxAge: int(sessionTTL.Seconds())})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(req *request) {
	if req.sessionID != "" {
		s.sessions.end(req.sessionID)
	}
	http.SetCookie(req.w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	http.Redirect(req.w, req.r, "/login", http.StatusSeeOther)
}
