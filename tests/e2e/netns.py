"""Run a command in a private network namespace with multicast on loopback: the e2e tests' network.

    unshare --net -- python -m tests.e2e.netns COMMAND [ARGS...]

does what ``ip link set lo up multicast on`` and ``ip route add 224.0.0.0/4 dev lo`` would (the
Python 3.14 test chroot has no iproute2), then replaces itself with COMMAND. It refuses to touch a
network namespace that is not private: loopback must be the only interface, and the namespace must
differ from the machine's (pid 1's), so nothing can multicast beyond the processes started here.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
import socket
import struct
import sys

# ioctl(2) on a network interface: struct ifreq is a 16-byte name and a 24-byte union (flags first).
_SIOCGIFFLAGS, _SIOCSIFFLAGS = 0x8913, 0x8914
_IFF_UP, _IFF_MULTICAST = 0x1, 0x1000
_IFREQ = "16sH22x"
# rtnetlink(7): RTM_NEWROUTE carrying a struct rtmsg and the RTA_DST / RTA_OIF attributes.
_RTM_NEWROUTE, _NLMSG_ERROR = 24, 2
_NLM_F_REQUEST, _NLM_F_ACK, _NLM_F_EXCL, _NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
_RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_LINK, _RTN_UNICAST = 254, 3, 253, 1
_RTA_DST, _RTA_OIF = 1, 4
_NLMSG_HEADER = "=IHHII"
_RTMSG = "=BBBBBBBBI"
MULTICAST_NETWORK, MULTICAST_PREFIX = "224.0.0.0", 4
LOOPBACK = "lo"
PREPARED = "EST_E2E_NETNS"  # the inode of the namespace main() prepared, for the command to check


def in_private_namespace() -> bool:
    """Loopback is the only interface, and the namespace is neither the parent's nor pid 1's."""
    own = _namespace("self")
    others = {_namespace(1), _namespace(os.getppid())} - {None}  # pid 1's is hidden in some sandboxes
    return bool(others) and own not in others and _only_loopback()


def in_prepared_namespace() -> bool:
    """Whether this process runs in the namespace :func:`main` checked and prepared."""
    return os.environ.get(PREPARED) == str(_namespace("self")) and _only_loopback()


def _namespace(pid: int | str) -> int | None:
    try:
        return Path(f"/proc/{pid}/ns/net").stat().st_ino
    except OSError:
        return None


def _only_loopback() -> bool:
    return [name for _, name in socket.if_nameindex()] == [LOOPBACK]


def enable_loopback_multicast() -> None:
    """Loopback up with multicast on, and the multicast range routed over it (mDNS needs both)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        name = LOOPBACK.encode()
        flags = struct.unpack(_IFREQ, fcntl.ioctl(sock, _SIOCGIFFLAGS, struct.pack(_IFREQ, name, 0)))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack(_IFREQ, name, flags | _IFF_UP | _IFF_MULTICAST))
    _add_route(MULTICAST_NETWORK, MULTICAST_PREFIX, socket.if_nametoindex(LOOPBACK))


def _add_route(destination: str, prefix: int, interface_index: int) -> None:
    body = struct.pack(
        _RTMSG, socket.AF_INET, prefix, 0, 0, _RT_TABLE_MAIN, _RTPROT_BOOT, _RT_SCOPE_LINK, _RTN_UNICAST, 0
    )
    body += _attribute(_RTA_DST, socket.inet_aton(destination))
    body += _attribute(_RTA_OIF, struct.pack("=I", interface_index))
    flags = _NLM_F_REQUEST | _NLM_F_ACK | _NLM_F_CREATE | _NLM_F_EXCL
    length = struct.calcsize(_NLMSG_HEADER) + len(body)
    header = struct.pack(_NLMSG_HEADER, length, _RTM_NEWROUTE, flags, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(header + body)
        reply = sock.recv(65536)
    (kind,) = struct.unpack_from("=H", reply, 4)
    (error,) = struct.unpack_from("=i", reply, struct.calcsize(_NLMSG_HEADER))
    if kind != _NLMSG_ERROR or error:
        raise OSError(-error, f"route {destination}/{prefix}: {os.strerror(-error)}")


def _attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def main(command: list[str]) -> None:
    """Prepare the namespace, then become ``command``."""
    if not command:
        sys.exit("usage: unshare --net -- python -m tests.e2e.netns COMMAND [ARGS...]")
    if not in_private_namespace():
        sys.exit("tests.e2e.netns: not in a private network namespace with loopback only; refusing")
    enable_loopback_multicast()
    os.environ[PREPARED] = str(_namespace("self"))
    os.execvp(command[0], command)  # noqa: S606 - the caller's command, by design


if __name__ == "__main__":
    main(sys.argv[1:])
