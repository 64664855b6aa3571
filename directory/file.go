package directory

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// fileData is one immutable snapshot of the LDIF file.
type fileData struct {
	entries   []*memEntry            // under the base DN, in file order
	byCanon   map[string]*memEntry   // canonical DN → entry
	memberIn  map[string][]*memEntry // canonical member DN → groups listing it in the group-mode attribute
	uidGroups map[string][]*memEntry // lower-case uid → posixGroups listing it in memberUid
	modTime   time.Time
	size      int64
}

// fileBackend serves lookups from an LDIF file held in memory. A reload
// swaps the whole snapshot atomically.
type fileBackend struct {
	s        *settings
	logger   *slog.Logger
	queries  *atomic.Uint64
	onReload func()
	data     atomic.Pointer[fileData]
	reloadMu sync.Mutex // serialises reloads
}

func newFileBackend(s *settings, logger *slog.Logger, queries *atomic.Uint64, onReload func()) (*fileBackend, error) {
	b := &fileBackend{s: s, logger: logger, queries: queries, onReload: onReload}
	fd, err := b.load()
	if err != nil {
		return nil, err
	}
	b.data.Store(fd)
	return b, nil
}

func (b *fileBackend) load() (*fileData, error) {
	return loadFile(b.s.cfg.File, b.s.baseDN, memberAttr(b.s.groupMode))
}

// memberAttr is the DN-valued membership attribute the file backend follows
// for a group mode: uniqueMember for "uniquemember", none for "memberuid",
// member otherwise (an LDIF file rarely carries memberOf; member is what it
// is derived from).
func memberAttr(mode string) string {
	switch mode {
	case "uniquemember":
		return "uniquemember"
	case "memberuid":
		return ""
	}
	return "member"
}

// loadFile reads and indexes the LDIF file; memberAttr names the membership
// attribute indexed (memberUid is indexed when it is empty).
func loadFile(path, baseDN, memberAttr string) (*fileData, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("directory: file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("directory: file: %w", err)
	}
	if st.Size() > maxLDIFSize {
		return nil, fmt.Errorf("directory: file: %s: larger than %d bytes", path, maxLDIFSize)
	}
	raw := make([]byte, st.Size())
	if _, err := f.ReadAt(raw, 0); err != nil && st.Size() > 0 {
		return nil, fmt.Errorf("directory: file: %w", err)
	}
	recs, err := parseLDIF(raw)
	if err != nil {
		return nil, fmt.Errorf("directory: file: %s: %w", path, err)
	}
	base := ""
	if baseDN != "" {
		base, _ = canonDN(baseDN)
	}
	fd := &fileData{
		byCanon:   make(map[string]*memEntry, len(recs)),
		memberIn:  make(map[string][]*memEntry),
		uidGroups: make(map[string][]*memEntry),
		modTime:   st.ModTime(),
		size:      st.Size(),
	}
	for _, r := range recs {
		if r.DN == "" {
			continue // the root DSE or an empty DN holds nothing to look up
		}
		m, err := newMemEntry(r)
		if err != nil {
			return nil, fmt.Errorf("directory: file: %s: line %d: %w", path, r.Line, err)
		}
		if !underBase(m.canon, base) {
			continue
		}
		if _, dup := fd.byCanon[m.canon]; dup {
			return nil, fmt.Errorf("directory: file: %s: line %d: duplicate entry %q", path, r.Line, r.DN)
		}
		fd.byCanon[m.canon] = m
		fd.entries = append(fd.entries, m)
		for _, v := range m.attrs[memberAttr] {
			c, err := canonDN(v)
			if err != nil {
				return nil, fmt.Errorf("directory: file: %s: line %d: %s %q: %w", path, r.Line, memberAttr, v, err)
			}
			fd.memberIn[c] = append(fd.memberIn[c], m)
		}
		if memberAttr != "" {
			continue
		}
		for _, v := range m.attrs["memberuid"] {
			k := strings.ToLower(v)
			fd.uidGroups[k] = append(fd.uidGroups[k], m)
		}
	}
	return fd, nil
}

func (b *fileBackend) lookup(ctx context.Context, kind, filter string) (string, []string, error) {
	f, err := ldap.CompileFilter(filter)
	if err != nil {
		return "", nil, fmt.Errorf("directory: lookup: filter: %w", err)
	}
	b.queries.Add(1)
	fd := b.data.Load()
	var found []*memEntry
	for _, m := range fd.entries {
		if m.match(f) {
			found = append(found, m)
		}
	}
	switch len(found) {
	case 0:
		return "", nil, nil
	case 1:
	default:
		return "", nil, ambiguous(len(found))
	}
	return found[0].dn, fd.groupsOf(found[0], b.s.nestedDepth), nil
}

// groupsOf returns the groups of m breadth-first: direct ones, then up to
// depth levels of nesting; each group once, cycles ignored.
func (fd *fileData) groupsOf(m *memEntry, depth int) []string {
	seen := map[string]bool{m.canon: true}
	var out []string
	level := []string{m.canon}
	var next []string
	add := func(g *memEntry) {
		if !seen[g.canon] {
			seen[g.canon] = true
			out = append(out, g.dn)
			next = append(next, g.canon)
		}
	}
	for _, uid := range m.attrs["uid"] {
		for _, g := range fd.uidGroups[strings.ToLower(uid)] {
			add(g)
		}
	}
	for l := 0; l <= depth && len(level) > 0; l++ {
		for _, c := range level {
			for _, g := range fd.memberIn[c] {
				add(g)
			}
		}
		level, next = next, nil
	}
	return out
}

func (b *fileBackend) check(ctx context.Context) error {
	_, err := b.load()
	return err
}

func (b *fileBackend) reload() error {
	b.reloadMu.Lock()
	defer b.reloadMu.Unlock()
	fd, err := b.load()
	if err != nil {
		return err
	}
	b.data.Store(fd)
	b.logger.Info("directory file loaded", "file", b.s.cfg.File, "entries", len(fd.entries))
	return nil
}

// run polls the file for changes and reloads it.
func (b *fileBackend) run(ctx context.Context) error {
	if b.s.reload <= 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTicker(b.s.reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		st, err := os.Stat(b.s.cfg.File)
		if err != nil {
			b.logger.Warn("directory file", "error", err.Error())
			continue
		}
		cur := b.data.Load()
		if st.ModTime().Equal(cur.modTime) && st.Size() == cur.size {
			continue
		}
		if err := b.reload(); err != nil {
			b.logger.Warn("directory file reload failed; keeping the previous contents", "error", err.Error())
			// Remember the attempt so a broken file is not re-parsed every tick.
			cp := *cur
			cp.modTime, cp.size = st.ModTime(), st.Size()
			b.data.CompareAndSwap(cur, &cp)
			continue
		}
		if b.onReload != nil {
			b.onReload()
		}
	}
}

func (b *fileBackend) close() {}
