"""Where a streamed check's Flax arrays go: onto the case's device, or sharded over a mesh.

Given a `jax.sharding.Mesh` and the port's partition spec of each variable
(`shardings(path, shape) -> PartitionSpec`, path as the variable's Flax path without its
collection: 'model/layers/0/self_attn/q_proj/kernel'), each variable is placed with its
NamedSharding, each input replicated over the mesh, and the blocks run inside the mesh
(`jax.set_mesh`), so that a port's `jax.shard_map` finds it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_parity.devices import jax_device
from pytest_parity.errors import ParityError


@dataclass(frozen=True)
class Placement:
    device: str = "cpu"
    mesh: Any = None
    shardings: Callable[[str, tuple[int, ...]], Any] | None = None

    def __post_init__(self) -> None:
        if (self.mesh is None) != (self.shardings is None):
            raise ParityError("streamed check: give mesh= and shardings= together (the "
                              "mesh and the partition spec of each Flax variable)")

    def variable(self, path: str, array: np.ndarray) -> Any:
        import jax

        if self.mesh is None:
            return jax.device_put(array, jax_device(self.device))
        spec = self.shardings(path, tuple(array.shape))  # type: ignore[misc]
        try:
            sharding = jax.sharding.NamedSharding(self.mesh, spec)
            return jax.device_put(array, sharding)
        except (ValueError, TypeError) as error:
            raise ParityError(f"streamed check: the variable {path} {tuple(array.shape)} "
                              f"cannot take the partition spec {spec}: {error}") from None

    def input(self, array: Any) -> Any:
        import jax

        if self.mesh is None:
            return jax.device_put(array, jax_device(self.device))
        return jax.device_put(array, jax.sharding.NamedSharding(
            self.mesh, jax.sharding.PartitionSpec()))

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        if self.mesh is None:
            yield
            return
        import jax

        with jax.set_mesh(self.mesh):
            yield
