package nft

import (
	"fmt"
	"net"
	"strings"

	"github.com/tapfw/tapfw/pkg/model"
	"github.com/tapfw/tapfw/pkg/netfilter"
	"github.com/tapfw/tapfw/pkg/ruleset"
)

// A tap's record chain (ruleset.RecordChain) says, besides its layer-2
// elements, who attached it and every element it put in the shared maps:
// a call reads it to take out exactly those, and to find the profiles
// the tap stops using. It is written in the transaction that makes what
// it records, so it cannot say anything else.

// tapRecord is what a record says of the backend's part of a tap.
type tapRecord struct {
	// attached is the line saying who attached the tap ("" when none).
	attached string
	// mac is the guest's MAC the config gave, recorded also when no
	// check uses it ("" when none).
	mac      string
	dispatch []Dispatch
	logs     []logElem
}

// logElem is a tap's element in a profile's log map.
type logElem struct{ Map, Chain string }

// Record lines: "jump ip tfw-out tfw-po4-…" for a dispatch element, "log
// tfw-po4-…-l1 tfw-lo4-tap110i0-drop" for a log map's, "mac
// 02:00:00:00:01:10" for the guest's MAC.
const (
	lineJump = "jump "
	lineLog  = "log "
	lineMAC  = "mac "
)

// recordLines are the lines of p's record.
func (p *Plan) recordLines() []string {
	lines := []string{p.attached}
	if p.mac != "" {
		lines = append(lines, lineMAC+p.mac)
	}
	for _, d := range p.Dispatch {
		lines = append(lines, lineJump+string(d.Family)+" "+d.Map+" "+d.Chain)
	}
	for _, l := range p.Logs {
		lines = append(lines, lineLog+l.Map+" "+l.Name)
	}
	return lines
}

// record is p's record chain: its layer-2 elements and its lines.
func (p *Plan) record() *netfilter.Record {
	return &netfilter.Record{Tap: p.Tap, L2: p.L2, Lines: p.recordLines()}
}

// parseRecord reads the backend's lines of a record; a nil record (a
// tap with none) is an empty one.
func parseRecord(r *netfilter.Record) (tapRecord, error) {
	var out tapRecord
	if r == nil {
		return out, nil
	}
	for _, l := range r.Lines {
		switch {
		case strings.HasPrefix(l, lineJump):
			f := strings.Fields(strings.TrimPrefix(l, lineJump))
			if len(f) != 3 || (f[0] != string(IPv4) && f[0] != string(IPv6)) || (f[1] != MapIn && f[1] != MapOut) {
				return out, fmt.Errorf("record of %s: line %q", r.Tap, l)
			}
			out.dispatch = append(out.dispatch, Dispatch{Family: Family(f[0]), Map: f[1], Port: r.Tap, Chain: f[2]})
		case strings.HasPrefix(l, lineMAC):
			m, err := net.ParseMAC(strings.TrimPrefix(l, lineMAC))
			if err != nil {
				return out, fmt.Errorf("record of %s: line %q", r.Tap, l)
			}
			out.mac = m.String()
		case strings.HasPrefix(l, lineLog):
			f := strings.Fields(strings.TrimPrefix(l, lineLog))
			if len(f) != 2 {
				return out, fmt.Errorf("record of %s: line %q", r.Tap, l)
			}
			out.logs = append(out.logs, logElem{Map: f[0], Chain: f[1]})
		default:
			if _, ok := ruleset.ParseDispatchComment(l); !ok {
				return out, fmt.Errorf("record of %s: line %q", r.Tap, l)
			}
			out.attached = l
		}
	}
	return out, nil
}

// attachment is who the record says attached the tap.
func (r tapRecord) attachment() (model.Attachment, bool) {
	return ruleset.ParseDispatchComment(r.attached)
}

// profiles are the profiles the record's elements jump to.
func (r tapRecord) profiles() []string {
	var out []string
	for _, d := range r.dispatch {
		out = append(out, d.Chain)
	}
	return out
}
