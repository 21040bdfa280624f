"""Starting or joining a Ray cluster, with defaults safe for a laptop and for CI."""

from __future__ import annotations

import os
from typing import Any

DEFAULT_OBJECT_STORE_BYTES = 1 << 30
"""The object store of a cluster fed starts: 1 GiB (or a quarter of the memory, if that is less)."""


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover (not POSIX)
        return 4 * DEFAULT_OBJECT_STORE_BYTES


def init(address: str | None = None, **options: Any) -> bool:
    """Starts a local Ray cluster, or joins the one at `address`, unless Ray is initialized already.

    A cluster fed starts has no dashboard, sends no usage statistics, gives its node the loopback
    address (Ray's servers still listen on every interface: firewall them on a shared network), bounds
    its object store (`DEFAULT_OBJECT_STORE_BYTES`) and keeps TensorFlow's logs quiet on its workers;
    `options` go to `ray.init` and override these. Returns True if this call started or joined the
    cluster, False if Ray was initialized already.
    """
    check_address(address)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    settings: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": "WARNING",
        "runtime_env": {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2", "RAY_USAGE_STATS_ENABLED": "0"}},
    }
    if address is None:  # a new local cluster
        settings["object_store_memory"] = min(DEFAULT_OBJECT_STORE_BYTES, _memory_bytes() // 4)
        settings["_node_ip_address"] = "127.0.0.1"
    settings.update(options)
    # Ray's own default joins the cluster its address file names (one left by `ray start`, or by a
    # cluster that died without cleaning up): "local" starts a new one, as fed does without an address.
    ray.init(address="local" if address is None else address, **settings)
    return True


def check_address(address: Any) -> None:
    """A TypeError unless `address` is a cluster's address (a str) or None."""
    if address is not None and not isinstance(address, str):
        raise TypeError(
            f"address must be the address of a Ray cluster (a str such as 'auto' or "
            f"'ray://host:10001') or None, got {address!r}."
        )


def connect(address: str | None, init_options: dict[str, Any] | None) -> bool:
    """`init(address, **init_options)`, refusing options for a cluster that is already running."""
    import ray

    if ray.is_initialized() and (address is not None or init_options):
        raise RuntimeError(
            "Ray is initialized already, so the executor cannot join another cluster or change its "
            "options: pass neither address nor init_options, or call ray.shutdown() first."
        )
    return init(address, **(init_options or {}))


def default_pool_size(num_cpus: float, num_gpus: float) -> int:
    """How many actors of this size the cluster holds at once (at least one)."""
    import ray

    resources = ray.cluster_resources()
    sizes = []
    if num_cpus:
        sizes.append(int(resources.get("CPU", 1) // num_cpus))
    if num_gpus:
        sizes.append(int(resources.get("GPU", 0) // num_gpus))
    return max(1, min(sizes) if sizes else int(resources.get("CPU", 1)))


def check_fits(num_actors: int, num_cpus: float, num_gpus: float) -> None:
    """Raises ValueError if the cluster could never hold `num_actors` actors of this size at once."""
    import ray

    total = ray.cluster_resources()
    for name, each in (("CPU", num_cpus), ("GPU", num_gpus)):
        if each and num_actors * each > total.get(name, 0) + 1e-9:
            raise ValueError(
                f"{num_actors} actors of {each} {name}s need {num_actors * each:g} {name}s; the Ray "
                f"cluster has {total.get(name, 0):g}. Ask for fewer actors or smaller ones."
            )


def free_cpus() -> float:
    """The CPUs of the Ray cluster this process joined that no actor or task holds now."""
    import ray

    if not ray.is_initialized():
        raise RuntimeError(
            "free_cpus needs a Ray cluster, and this process has joined none: call fed_ray.init() "
            "first."
        )
    return float(ray.available_resources().get("CPU", 0))


def free_resources() -> dict[str, float]:
    import ray

    free = ray.available_resources()
    return {k: v for k, v in free.items() if k in ("CPU", "GPU", "memory", "object_store_memory")}


def shutdown() -> None:
    """Stops the Ray cluster this process started (or disconnects from the one it joined)."""
    import ray

    ray.shutdown()
