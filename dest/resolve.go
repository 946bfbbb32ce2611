package dest

import (
	"context"
	"net"
	"slices"
	"time"
)

// resolveLoop looks the hostname destinations up every DNSRefresh; one
// whose connected peer is no longer among the answers is told to
// reconnect (the dial looks it up again). A failed lookup changes nothing.
func (p *Set) resolveLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.DNSRefresh)
	defer t.Stop()
	r := p.cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.stop:
			return
		case <-t.C:
		}
		for _, d := range p.view.Load().dests {
			ip := d.peerIP.Load()
			if ip == nil || d.File != "" || net.ParseIP(d.Host) != nil {
				continue
			}
			lctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
			addrs, err := r.LookupHost(lctx, d.Host)
			cancel()
			if err != nil || len(addrs) == 0 || slices.Contains(addrs, *ip) {
				continue
			}
			p.log.Info("destination's name resolves to new addresses", "dest", d.Name, "host", d.Host, "connected_to", *ip, "now", addrs)
			d.moved.Store(true)
			kick(d.holdKick)
		}
	}
}
