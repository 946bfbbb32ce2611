package batch

import (
	"sync"
	"time"
)

// Rejected is one rejected line as the reject log keeps it.
type Rejected struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	Client string    `json:"client"` // address the line came from; "" when unknown
	Line   string    `json:"line"`   // at most RejectLineMax bytes of it
}

// RejectLineMax is how much of a rejected line the log keeps.
const RejectLineMax = 256

// RejectLog keeps the last rejected lines of each reason (a bounded ring
// per reason: memory is at most reasons × per × RejectLineMax). Safe for
// concurrent use.
type RejectLog struct {
	mu    sync.Mutex
	per   int
	rings map[string]*rejectRing
	now   func() time.Time
}

type rejectRing struct {
	items []Rejected
	next  int
}

// NewRejectLog keeps per lines per reason (at least 1).
func NewRejectLog(per int) *RejectLog {
	return &RejectLog{per: max(per, 1), rings: map[string]*rejectRing{}, now: time.Now}
}

// Add records line (copied, cut to RejectLineMax) rejected for reason.
func (l *RejectLog) Add(reason, client string, line []byte) {
	if len(line) > RejectLineMax {
		line = line[:RejectLineMax]
	}
	r := Rejected{Time: l.now().UTC(), Reason: reason, Client: client, Line: string(line)}
	l.mu.Lock()
	defer l.mu.Unlock()
	ring := l.rings[reason]
	if ring == nil {
		ring = &rejectRing{}
		l.rings[reason] = ring
	}
	if len(ring.items) < l.per {
		ring.items = append(ring.items, r)
		return
	}
	ring.items[ring.next] = r
	ring.next = (ring.next + 1) % l.per
}

// Recent returns the kept lines by reason, newest first.
func (l *RejectLog) Recent() map[string][]Rejected {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]Rejected{}
	for reason, ring := range l.rings {
		n := len(ring.items)
		list := make([]Rejected, 0, n)
		for i := range n {
			list = append(list, ring.items[(ring.next-1-i+2*n)%n])
		}
		out[reason] = list
	}
	return out
}
