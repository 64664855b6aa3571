package main

import (
	"bytes"
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/policy/audit"
	"github.com/gatehouse/gatehouse/store/spool"
	"github.com/gatehouse/gatehouse/store/wifi"
)

// Audit events into PostgreSQL ([store] audit = true): every event that
// goes to the audit trail is also put, in the trail's JSON form
// (audit.AppendJSON), into the node's spool, and replayed into the
// audit_events table. The sink lives here, in cmd, because it is glue
// between policy/audit (the format) and store/spool (the transport):
// policy stays standard library only and no policy package imports store.
// Like the trail it never blocks a door: a full queue drops and counts.

const (
	auditStoreQueue  = 8192
	auditStoreLinger = 100 * time.Millisecond
)

type storeAuditor struct {
	next    policy.Auditor // the trail, the decision counter's next; nil = none
	spool   *spool.Spool
	in      chan policy.AuditEvent
	dropped atomic.Uint64
	log     *slog.Logger
}

func newStoreAuditor(next policy.Auditor, sp *spool.Spool, log *slog.Logger) *storeAuditor {
	return &storeAuditor{next: next, spool: sp, in: make(chan policy.AuditEvent, auditStoreQueue), log: log}
}

// Audit implements policy.Auditor: the trail first, then the store's queue.
func (a *storeAuditor) Audit(ev policy.AuditEvent) {
	if a.next != nil {
		a.next.Audit(ev)
	}
	select {
	case a.in <- ev:
	default:
		a.dropped.Add(1)
	}
}

// run spools queued events until ctx is done, then spools what is queued.
func (a *storeAuditor) run(ctx context.Context) {
	var lines [][]byte
	flush := func() {
		if len(lines) == 0 {
			return
		}
		if err := a.spool.Append(wifi.KindAudit, lines...); err != nil {
			a.dropped.Add(uint64(len(lines)))
			a.log.Warn("store: audit events not spooled", "err", err, "events", len(lines))
		}
		lines = lines[:0]
	}
	add := func(ev *policy.AuditEvent) {
		b, err := audit.AppendJSON(nil, ev)
		if err != nil {
			a.dropped.Add(1)
			return
		}
		lines = append(lines, bytes.TrimSuffix(b, []byte{'\n'}))
	}
	tick := time.NewTicker(auditStoreLinger)
	defer tick.Stop()
	for {
		select {
		case ev := <-a.in:
			add(&ev)
			if len(lines) >= 1000 {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case ev := <-a.in:
					add(&ev)
				default:
					flush()
					return
				}
			}
		}
	}
}
