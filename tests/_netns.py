"""Linux network namespaces as separate "hosts", for tests/test_multihost.py.

One :class:`Net` is a Linux bridge in the test's own namespace with an address
(``10.213.0.1/24``), and one network namespace per host, each joined to the
bridge by a veth pair and given its own IPv4 address in ``10.213.0.0/24``. No
namespace gets a default route and IP forwarding is not touched, so packets
only go between the namespaces and the host end of the bridge.

Every name starts with ``dgmh-<pid>-`` (``<pid>`` is the test process), so two
runs never collide and :func:`remove_stale` can delete what a crashed run left
(the names of runs whose process is gone). Interface names are limited to 15
characters: ``dgmh-<pid>-<tag>`` with a pid of up to 7 digits leaves 2 for the
tag.

Links are shaped with ``tbf`` (a rate limit, in both directions of every
veth). This kernel has no qdisc or action that adds delay: ``netem``, ``fq``,
``fq_codel``, ``cake``, ``sfq``, ``codel``, ``pie``, ``etf`` and ``taprio`` are
all "Specified qdisc kind is unknown", and the ``gact``/``bpf`` actions are not
built (only htb, tbf, ingress and fifo qdiscs; u32/bpf classifiers with the
mirred action). :func:`probe_delay` checks again on the machine the tests
run on (``Net.delay``), and the tests report what it found; where ``netem``
works, every link gets ``netem delay 2ms rate 100mbit`` instead of tbf.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

PREFIX = "dgmh-"
SUBNET = ipaddress.ip_network("10.213.0.0/24")
BRIDGE_ADDR = "10.213.0.1"
#: tbf rate limit of each direction of each link
RATE = "100mbit"
BURST = "128kb"
#: the longest a packet may wait in tbf's queue before it is dropped
QUEUE_LATENCY = "100ms"
DELAY_QDISCS = ("netem delay 20ms", "fq_codel", "cake rtt 20ms", "fq")
#: one-way delay of each direction of each link, where the kernel has netem
NETEM_DELAY = "2ms"


def run(*args: str, check: bool = True, timeout: float = 20) -> str:
    """Run a command; on failure raise with its output."""
    p = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and p.returncode:
        raise RuntimeError(
            f"{' '.join(args)!r} failed ({p.returncode}): {p.stderr.strip() or p.stdout.strip()}"
        )
    return p.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(name: str) -> int | None:
    """The pid in a ``dgmh-<pid>-...`` name."""
    if not name.startswith(PREFIX):
        return None
    head = name[len(PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def netns_list() -> list[str]:
    return [line.split()[0] for line in run("ip", "netns", "list").splitlines() if line]


def links() -> list[str]:
    out = run("ip", "-o", "link", "show")
    names = []
    for line in out.splitlines():
        # "12: name@peer: <...>"
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        names.append(name)
    return names


def kill_netns_pids(ns: str, sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to every process that lives in namespace ``ns``."""
    pids = [int(p) for p in run("ip", "netns", "pids", ns, check=False).split() if p]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def remove_stale() -> list[str]:
    """Delete ``dgmh-*`` namespaces and links whose run is gone; return their names."""
    removed = []
    for ns in netns_list():
        pid = _owner(ns)
        if pid is not None and not _pid_alive(pid):
            kill_netns_pids(ns)
            run("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    for link in links():
        pid = _owner(link)
        if pid is not None and not _pid_alive(pid):
            run("ip", "link", "del", link, check=False)
            removed.append(link)
    return removed


def subnet_in_use() -> str | None:
    """An interface of this namespace that already has an address in SUBNET."""
    out = run("ip", "-o", "-4", "addr", "show")
    for line in out.splitlines():
        parts = line.split()
        name, cidr = parts[1], parts[3]
        if ipaddress.ip_interface(cidr).ip in SUBNET:
            return f"{name} has {cidr}"
    return None


def probe_delay(dev: str) -> str | None:
    """The first qdisc spec that adds delay on ``dev``, or None if none works."""
    for spec in DELAY_QDISCS:
        p = subprocess.run(
            ["tc", "qdisc", "add", "dev", dev, "root", *spec.split()],
            capture_output=True,
            text=True,
            check=False,
        )
        if p.returncode == 0:
            run("tc", "qdisc", "del", "dev", dev, "root", check=False)
            return spec
    return None


class Proc:
    """A process started in a namespace, in its own session (process group)."""

    def __init__(self, name: str, ns: str, popen: subprocess.Popen[bytes], log: Path):
        self.name = name
        self.ns = ns
        self.popen = popen
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"--- {self.name}: no log"
        return (
            f"--- {self.name} (pid {self.pid}, ns {self.ns}), last {lines} lines of {self.log}:\n"
            + "\n".join(text[-lines:])
        )

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, then SIGKILL it if it is not gone in time."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
            if self.popen.poll() is not None:
                # the leader is gone; its group (a nanny's worker) may not be
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)


class Host:
    def __init__(self, net: Net, tag: str, ip: str):
        self.net = net
        self.tag = tag
        self.ip = ip
        self.ns = f"{net.prefix}{tag}"
        #: the host end of this host's veth pair (in the test's namespace)
        self.veth = f"{net.prefix}{tag}"

    def exec_args(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, check: bool = True) -> str:
        return run(*self.exec_args(args), check=check)

    def start(self, name: str, args: Sequence[str], env: dict[str, str]) -> Proc:
        log = self.net.logdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                self.exec_args(args),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        proc = Proc(name, self.ns, popen, log)
        self.net.procs.append(proc)
        return proc

    def cut(self) -> None:
        """Take this host off the network: its link goes down (packets dropped)."""
        run("ip", "link", "set", self.veth, "down")

    def __repr__(self) -> str:
        return f"<Host {self.tag} {self.ip} ns={self.ns}>"


class Net:
    """A bridge, and namespaces joined to it (see the module docstring)."""

    def __init__(self, logdir: Path, shape: bool = True):
        self.prefix = f"{PREFIX}{os.getpid()}-"
        self.bridge = f"{self.prefix}br"
        self.logdir = logdir
        self.shape = shape
        self.hosts: dict[str, Host] = {}
        self.procs: list[Proc] = []
        self.shaping: str = "none"
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run(
            "ip", "addr", "add", f"{BRIDGE_ADDR}/{SUBNET.prefixlen}", "dev", self.bridge
        )
        run("ip", "link", "set", self.bridge, "up")
        #: a qdisc that adds delay, if this kernel has one (netem is applied)
        self.delay = probe_delay(self.bridge)

    def add_host(self, tag: str, ip: str) -> Host:
        assert ipaddress.ip_address(ip) in SUBNET, ip
        assert len(f"{self.prefix}{tag}") <= 15, "interface name too long"
        h = Host(self, tag, ip)
        self.hosts[tag] = h
        run("ip", "netns", "add", h.ns)
        run(
            "ip", "link", "add", h.veth, "type", "veth",
            "peer", "name", "eth0", "netns", h.ns,
        )  # fmt: skip
        run("ip", "link", "set", h.veth, "master", self.bridge)
        run("ip", "link", "set", h.veth, "up")
        run("ip", "neigh", "flush", "to", ip, check=False)
        h.run("ip", "link", "set", "lo", "up")
        h.run("ip", "addr", "add", f"{ip}/{SUBNET.prefixlen}", "dev", "eth0")
        h.run("ip", "link", "set", "eth0", "up")
        if self.shape and self.delay is not None and self.delay.startswith("netem"):
            # Where the kernel has netem: delay and rate limit in one qdisc.
            spec = ("netem", "delay", NETEM_DELAY, "rate", RATE)
            try:
                run("tc", "qdisc", "replace", "dev", h.veth, "root", *spec)
                h.run("tc", "qdisc", "replace", "dev", "eth0", "root", *spec)
                self.shaping = " ".join(spec)
                return h
            except RuntimeError as e:
                self.delay = f"none (netem failed: {e})"
        if self.shape:
            try:
                run(
                    "tc", "qdisc", "replace", "dev", h.veth, "root", "tbf",
                    "rate", RATE, "burst", BURST, "latency", QUEUE_LATENCY,
                )  # fmt: skip
                h.run(
                    "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
                    "rate", RATE, "burst", BURST, "latency", QUEUE_LATENCY,
                )  # fmt: skip
                self.shaping = f"tbf rate {RATE} burst {BURST} latency {QUEUE_LATENCY}"
            except RuntimeError as e:
                self.shaping = f"none (tbf failed: {e})"
        return h

    def logs(self, lines: int = 30) -> str:
        return "\n".join(p.tail(lines) for p in self.procs)

    def close(self) -> list[str]:
        """Stop every process, delete every link and namespace; return problems."""
        problems = []
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as e:  # keep cleaning up
                problems.append(f"stopping {p.name}: {e!r}")
        for h in self.hosts.values():
            if kill_netns_pids(h.ns):
                problems.append(f"processes were left in {h.ns}")
        for h in self.hosts.values():
            run("ip", "link", "del", h.veth, check=False)
            run("ip", "netns", "del", h.ns, check=False)
        run("ip", "link", "del", self.bridge, check=False)
        left = [n for n in netns_list() + links() if n.startswith(self.prefix)]
        if left:
            problems.append(f"left behind: {left}")
        return problems

    def remove_host(self, tag: str) -> None:
        """Stop the processes of host ``tag`` and delete its namespace and link."""
        h = self.hosts.pop(tag)
        for p in [p for p in self.procs if p.ns == h.ns]:
            p.stop()
            self.procs.remove(p)
        kill_netns_pids(h.ns)
        run("ip", "link", "del", h.veth, check=False)
        run("ip", "netns", "del", h.ns, check=False)
        # A host added again with this address has a new MAC: without this, the
        # old neighbor entry sends our packets to the dead MAC for up to ~45 s.
        run("ip", "neigh", "flush", "to", h.ip, check=False)
