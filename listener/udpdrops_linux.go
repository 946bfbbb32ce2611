package listener

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// KernelDrops returns the datagrams the kernel dropped for this socket
// (its receive buffer was full): the drops column of /proc/net/udp or
// /proc/net/udp6 for the socket's inode. 0 when unknown.
func (u *UDP) KernelDrops() uint64 {
	raw, err := u.conn.SyscallConn()
	if err != nil {
		return 0
	}
	var inode string
	raw.Control(func(fd uintptr) {
		link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inode = strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
		}
	})
	if inode == "" {
		return 0
	}
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// sl local rem st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
			if len(f) >= 13 && f[9] == inode {
				n, _ := strconv.ParseUint(f[12], 10, 64)
				return n
			}
		}
	}
	return 0
}
