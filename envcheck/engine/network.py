"""The Docker network envcheck's builds run on while the package cache serves them, and this machine's address there.

Builds that fetch through the package cache run on a bridge network of their own (`envcheck-builds`, made once per
daemon, no traffic between its containers) instead of the default bridge. The mirror answers only callers from
that network's subnet (and this machine), so probe containers and the user's own containers on docker0 or on
other networks cannot list or download packages through it with this host's index credentials.

The address is the network's IPAM gateway, else its bridge interface's own address, else the subnet's first
host: Docker 20.10 reports the default bridge without an IPAM `Gateway` the first time a daemon starts
(`{'Subnet': '172.17.0.0/16'}`, seen on a fresh machine) and with one after a restart, and a daemon's answer is
untrusted input. An address a server must not bind (0.0.0.0, loopback, multicast, reserved) is refused.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass
from typing import Any

from envcheck import labels
from envcheck.engine.client import docker_errors

BUILD_NETWORK = "envcheck-builds"
SIOCGIFADDR = 0x8915  # Linux ioctl: an interface's IPv4 address
IFNAMSIZ = 16
# "This network", loopback, multicast and the reserved block up to the broadcast address: never a bridge's.
REFUSED = tuple(ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3"))
WIDEST = 8  # a subnet wider than a /8 is not a Docker bridge's: its callers would be most of the Internet


@dataclass(frozen=True)
class BuildNetwork:
    """The builds' network: its name, this machine's address on it, and the subnet its containers come from."""

    name: str
    address: str
    subnet: ipaddress.IPv4Network


def interface_address(name: str) -> str | None:
    """The IPv4 address of one of this machine's network interfaces, or None (no such interface, or no address)."""
    if not name or len(name.encode()) >= IFNAMSIZ or "\0" in name:
        return None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def interface_name(network: dict[str, Any]) -> str:
    """The bridge interface Docker made for a network: its `bridge.name` option, docker0 for the default bridge,
    else br-<first 12 characters of the network id> (libnetwork's naming)."""
    options = network.get("Options") if isinstance(network.get("Options"), dict) else {}
    named = options.get("com.docker.network.bridge.name")
    if isinstance(named, str) and named:
        return named
    if network.get("Name") == "bridge":
        return "docker0"
    return f"br-{str(network.get('Id') or '')[:12]}"


def bindable(text: Any) -> ipaddress.IPv4Address | None:
    """text as an IPv4 address a server may listen on for containers, or None."""
    try:
        address = ipaddress.IPv4Address(str(text))
    except ValueError:
        return None
    return None if any(address in refused for refused in REFUSED) else address


def address_of(network: dict[str, Any]) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Network] | str:
    """This machine's address on a network as `docker network inspect` describes it, with the network's subnet;
    or why there is none. Only the first IPv4 config counts (Docker's bridges carry one)."""
    ipam = network.get("IPAM") if isinstance(network.get("IPAM"), dict) else {}
    configs = ipam.get("Config") if isinstance(ipam.get("Config"), list) else []
    for config in (c for c in configs if isinstance(c, dict)):
        try:
            subnet = ipaddress.IPv4Network(str(config.get("Subnet")), strict=False)
        except ValueError:
            continue  # an IPv6 subnet, or junk
        if subnet.prefixlen < WIDEST or any(subnet.overlaps(refused) for refused in REFUSED):
            return f"network {network.get('Name')!r} has a subnet no bridge has ({subnet})"
        candidates = [config.get("Gateway"), interface_address(interface_name(network))]
        if subnet.num_addresses > 2:
            candidates.append(str(subnet.network_address + 1))
        for candidate in candidates:
            address = bindable(candidate)
            if address is not None and address in subnet:
                return address, subnet
        return f"network {network.get('Name')!r} has no usable gateway address in {subnet}"
    return f"network {network.get('Name')!r} has no IPv4 subnet"


def build_network(api: Any) -> BuildNetwork | str:
    """The builds' network on this daemon, made if missing; or why there is none (the cache then is not used)."""
    try:
        network = _find(api) or _create(api)
    except docker_errors() as exc:
        return f"cannot make the Docker network {BUILD_NETWORK!r} for builds ({str(exc).strip()[:200]})"
    found = address_of(network)
    if isinstance(found, str):
        return found
    address, subnet = found
    return BuildNetwork(str(network.get("Name") or BUILD_NETWORK), str(address), subnet)


def _find(api: Any) -> dict[str, Any] | None:
    """The network of that exact name (the API's name filter also matches parts of names); the oldest where an old
    daemon let two runs make one each."""
    matches = [n for n in api.networks(names=[BUILD_NETWORK]) if n.get("Name") == BUILD_NETWORK]
    if not matches:
        return None
    oldest = min(matches, key=lambda n: str(n.get("Created") or ""))
    return api.inspect_network(oldest["Id"])


def _create(api: Any) -> dict[str, Any]:
    import docker.errors

    try:
        api.create_network(
            BUILD_NETWORK,
            driver="bridge",
            options={"com.docker.network.bridge.enable_icc": "false"},  # builds have nothing to say to each other
            labels={labels.OWNER: "1"},
            check_duplicate=True,
        )
    except docker.errors.APIError as exc:
        if exc.status_code != 409:  # 409: another run made it a moment ago
            raise
    found = _find(api)
    if found is None:
        raise docker.errors.NotFound(f"network {BUILD_NETWORK} vanished after it was made")
    return found
