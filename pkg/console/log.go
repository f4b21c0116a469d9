package console

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tapfw/tapfw/pkg/config"
	"github.com/tapfw/tapfw/pkg/nflog"
	"github.com/tapfw/tapfw/pkg/ruleset"
	"golang.org/x/sys/unix"
)

// The log page: the latest lines the rules log, when the base config
// sends them to an NFLOG group (logTarget NFLOG). The console binds that
// group while it runs, and follows the config when it changes group;
// with logTarget LOG the lines are in the kernel log instead.

// LogConn is a bound NFLOG group.
type LogConn interface {
	Receive(timeout time.Duration) ([]nflog.Entry, error)
	Close() error
}

// logLines is how many lines the log page keeps.
const logLines = 500

// logTail keeps the latest lines of the group the config names.
type logTail struct {
	open func(group uint16) (LogConn, error)

	mu     sync.Mutex
	lines  []logLine
	status string
	conn   LogConn
	group  int // bound group, -1 for none
}

// logLine is one logged packet in the config's words.
type logLine struct {
	Time                     string
	Owner, Dir, What         string
	Prefix, Packet           string
	In, Out, PhysIn, PhysOut string
}

func newLogTail(open func(uint16) (LogConn, error)) *logTail {
	if open == nil {
		open = func(g uint16) (LogConn, error) { return nflog.Listen(g) }
	}
	return &logTail{open: open, group: -1, status: "starting"}
}

// logGroup is the NFLOG group the config logs to (-1: none) and why.
func (s *Server) logGroup() (int, string) {
	cur, err := s.readConfig()
	if err != nil {
		return -1, err.Error()
	}
	_, conf, err := config.MergeBase(s.opt.Config, cur.data)
	if err != nil {
		return -1, err.Error()
	}
	if conf.LogTarget != "NFLOG" {
		return -1, "logTarget is LOG: the lines are in the kernel log (journalctl -k), not here"
	}
	if conf.NFLogGroup != nil {
		return *conf.NFLogGroup, ""
	}
	return 0, ""
}

// logLoop follows the config's group and reads it until Close.
func (s *Server) logLoop() {
	defer s.done.Done()
	var checked time.Time
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		if time.Since(checked) > max(s.opt.Sample, 5*time.Second) {
			checked = time.Now()
			s.log.follow(s.logGroup())
		}
		if !s.log.read() {
			select {
			case <-s.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// follow binds group, unless it is bound already; -1 unbinds.
func (l *logTail) follow(group int, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if group == l.group && l.conn != nil {
		return
	}
	if l.conn != nil {
		l.conn.Close()
		l.conn, l.group = nil, -1
	}
	if group < 0 {
		l.status = why
		return
	}
	c, err := l.open(uint16(group))
	if err != nil {
		l.status = err.Error()
		return
	}
	l.conn, l.group = c, group
	l.status = fmt.Sprintf("listening to NFLOG group %d", group)
}

// read takes what the group has; false when no group is bound.
func (l *logTail) read() bool {
	l.mu.Lock()
	c := l.conn
	l.mu.Unlock()
	if c == nil {
		return false
	}
	entries, err := c.Receive(200 * time.Millisecond)
	switch {
	case errors.Is(err, unix.ENOBUFS):
		// The kernel dropped lines; the group stays bound.
		l.mu.Lock()
		l.status = fmt.Sprintf("listening to NFLOG group %d (lines were lost at %s: more than the console could read)", l.group, time.Now().Format("15:04:05"))
		l.mu.Unlock()
		return true
	case err != nil:
		// The next follow binds the group again.
		l.mu.Lock()
		l.status = err.Error()
		l.conn.Close()
		l.conn, l.group = nil, -1
		l.mu.Unlock()
		return false
	case len(entries) == 0:
		return true
	}
	lines := make([]logLine, 0, len(entries))
	for _, e := range entries {
		lines = append(lines, lineOf(e))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, lines...)
	if n := len(l.lines); n > logLines {
		l.lines = slices.Clone(l.lines[n-logLines:])
	}
	return true
}

func (l *logTail) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

// lineOf reads an entry's prefix back into whose rule logged it.
func lineOf(e nflog.Entry) logLine {
	l := logLine{Time: e.Time.Format("15:04:05.000"), Prefix: e.Prefix, Packet: e.Packet,
		In: ifName(e.InDev), Out: ifName(e.OutDev), PhysIn: ifName(e.PhysInDev), PhysOut: ifName(e.PhysOutDev)}
	if p, ok := ruleset.ParseLogPrefix(e.Prefix); ok {
		l.Owner, l.Dir, l.What = p.Owner, p.Dir, describeWhat(p.What)
	}
	if l.Owner == "" {
		// The prefix leaves the tap out: the bridge port says it.
		l.Owner = l.PhysIn
		if l.Dir == "in" {
			l.Owner = l.PhysOut
		}
	}
	return l
}

func describeWhat(w string) string {
	switch {
	case w == "drop":
		return "policy: drop"
	case w == "rej":
		return "policy: reject"
	case strings.HasPrefix(w, "r"):
		return "rule " + w[1:]
	}
	return w
}

func ifName(index uint32) string {
	if index == 0 {
		return ""
	}
	if ifc, err := net.InterfaceByIndex(int(index)); err == nil {
		return ifc.Name
	}
	return fmt.Sprintf("#%d", index)
}

type logData struct {
	Status string
	Lines  []logLine // newest first
}

func (logData) title() (string, string) { return "log", "log" }

func (s *Server) logPage(req *request) {
	s.log.mu.Lock()
	d := logData{Status: s.log.status, Lines: slices.Clone(s.log.lines)}
	s.log.mu.Unlock()
	slices.Reverse(d.Lines)
	s.render(req, http.StatusOK, "log", d)
}
