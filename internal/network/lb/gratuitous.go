package lb

import (
	"errors"
	"net"
	"net/netip"
)

// AnnounceGratuitous sends gratuitous ARP for each address from iface, an
// interface of the calling thread's network namespace, so that neighbours
// repoint their caches at once (a router's floating IP that moved here).
func AnnounceGratuitous(iface *net.Interface, addrs ...netip.Addr) error {
	r, err := openResponder(iface)
	if err != nil {
		return err
	}
	defer r.close()
	var errs []error
	for _, a := range addrs {
		errs = append(errs, r.announce(a))
	}
	return errors.Join(errs...)
}
