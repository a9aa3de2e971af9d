"""Separate hosts on one machine for the cluster tests: a network namespace per node, each
with its own address on a private /24, joined by a bridge in a namespace of their own (the
"hub", where manage and the clients run). Nothing is made in the machine's own namespace, and
everything is removed on exit, also when a test fails.

Where namespaces cannot be made (not root, no `ip`, a kernel without them) the nodes share
loopback on free ports instead, and `Hosts.mode` / `Hosts.reason` say so.
"""

import contextlib
import ctypes
import os
import random
import shutil
import socket
import subprocess
import time


def _free_ports(count):
    """`count` free ports on 127.0.0.1, below the kernel's ephemeral range: a killed node starts
    again on its ports, and a port of that range, once free, can be taken meanwhile by any
    outgoing connection."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral_low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    ports = set()
    while len(ports) < count:
        port = random.randrange(10000, max(ephemeral_low, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.add(port)
    return sorted(ports)


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Hosts:
    """`nodes` hosts; use as a context manager."""

    def __init__(self, nodes=3):
        self.count = nodes
        self.mode = None
        self.reason = ""
        self.namespaces = []
        self.hub = None
        self.addresses = []  # (host, client port, http port, cluster port) per node
        # A random 10.x.y.0/24 per run, so parallel runs of other tests never collide.
        self.subnet = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.tag = f"h16f{os.getpid() % 100000}{random.randint(0, 0xfff):03x}"

    def __enter__(self):
        try:
            self._make_namespaces()
            self.mode = "netns"
        except (OSError, subprocess.CalledProcessError, RuntimeError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            self._remove_namespaces()
            self.mode = "loopback"
            self.reason = f"network namespaces unavailable ({detail.strip()})"
            ports = iter(_free_ports(3 * self.count))
            self.addresses = [
                ("127.0.0.1", next(ports), next(ports), next(ports))
                for _ in range(self.count)
            ]
        return self

    def __exit__(self, *exc):
        self._remove_namespaces()
        return False

    def describe(self):
        if self.mode == "netns":
            hosts = ", ".join(a[0] for a in self.addresses)
            return (
                f"{self.count} network namespaces ({hosts}) joined by a bridge; "
                f"manage and the clients run in {self.hub}"
            )
        return f"FALLBACK to loopback ports on 127.0.0.1, not separate hosts: {self.reason}"

    def _make_namespaces(self):
        if os.environ.get("CLUSTER_TEST_LOOPBACK"):
            raise RuntimeError("CLUSTER_TEST_LOOPBACK is set")
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise RuntimeError("needs root and iproute2's ip")
        self.hub = f"{self.tag}-hub"
        _ip("netns", "add", self.hub)
        self.namespaces.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "addr", "add", f"{self.subnet}.254/24", "dev", "br0")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for i in range(1, self.count + 1):
            ns = f"{self.tag}-n{i}"
            _ip("netns", "add", ns)
            self.namespaces.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            # Made inside the hub with its peer inside the node: nothing in the root namespace.
            _ip("-n", self.hub, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
            _ip("-n", ns, "addr", "add", f"{self.subnet}.{i}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            # Separate hosts: the same ports on every node.
            self.addresses.append((f"{self.subnet}.{i}", 4222, 8222, 6222))
        # The bridge forwards once the ports are up: wait until the hub reaches every node.
        deadline = time.monotonic() + 10
        probe = (
            "import socket,sys\n"
            "s=socket.socket(); s.settimeout(0.5)\n"
            "r=s.connect_ex((sys.argv[1], 9))\n"
            "sys.exit(0 if r in (0, 111) else 1)\n"
        )
        for host, *_ in self.addresses:
            while True:
                ok = subprocess.run(
                    ["ip", "netns", "exec", self.hub, "python3", "-c", probe, host],
                    capture_output=True,
                ).returncode == 0
                if ok:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the hub does not reach {host}")
                time.sleep(0.1)

    def _remove_namespaces(self):
        for ns in reversed(self.namespaces):
            # Processes still inside keep a namespace alive: end them first.
            pids = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []

    @contextlib.contextmanager
    def on_hub(self):
        """Run this thread in the hub's network namespace (the clients' sockets must be made
        there: from the machine's own namespace the nodes' addresses are not ours to reach)."""
        if self.mode != "netns":
            yield
            return
        libc = ctypes.CDLL(None, use_errno=True)
        clone_newnet = 0x40000000
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        hub = os.open(f"/run/netns/{self.hub}", os.O_RDONLY)
        try:
            if libc.setns(hub, clone_newnet) != 0:
                raise OSError(ctypes.get_errno(), "setns into the hub failed")
            try:
                yield
            finally:
                if libc.setns(home, clone_newnet) != 0:
                    raise OSError(ctypes.get_errno(), "setns back failed")
        finally:
            os.close(hub)
            os.close(home)

    def prefix(self, where):
        """The command prefix that runs something on host `where` (a node index from 0, or
        None for the hub)."""
        if self.mode != "netns":
            return []
        ns = self.hub if where is None else f"{self.tag}-n{where + 1}"
        return ["ip", "netns", "exec", ns]

    def cluster_toml(self, name="nats"):
        lines = [
            "# Written by the failover test: one node per host.",
            f'name = "{name}"',
            'max_memory_store = "256MB"',
            'max_file_store = "1GB"',
        ]
        for i, (host, port, http_port, cluster_port) in enumerate(self.addresses, start=1):
            lines += [
                "",
                "[[node]]",
                f'name = "nats-{i}"',
                f'host = "{host}"',
                f"port = {port}",
                f"http_port = {http_port}",
                f"cluster_port = {cluster_port}",
            ]
        return "\n".join(lines) + "\n"
