"""``up --target URN [--target-dependents]`` and ``up --replace URN``, as the engine constrains
an update (pulumi v3.259.0 pkg/resource/deploy/step_generator.go):

- a resource is targeted when named, or with ``--target-dependents`` when its provider, parent
  or a dependency is (``isTargetedForUpdate``, 158-190); providers always are (1290-1300);
- an untargeted resource that exists keeps its old state, undiffed (a same step, 1553-1560);
- an untargeted one that does not exist yet is not created (a skipped create, 1778-1782), and a
  targeted one depending on it fails the update (500-533, diag 2013);
- only targeted resources that left the program are deleted (2349-2460);
- ``--replace`` replaces the named resources whatever their diff (``isTargetedReplace``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from standin.ops import ResourceFailed, UnsupportedResource


@dataclass
class Targets:
    targets: frozenset[str]
    dependents: bool = False
    actual: set[str] = field(default_factory=set)  # targeted so far (targetsActual)
    skipped: set[str] = field(default_factory=set)  # untargeted, not created

    def __post_init__(self) -> None:
        for t in self.targets:
            if "*" in t:
                raise UnsupportedResource(
                    f"--target {t}: wildcards are not modelled by the stand-in"
                )

    def targeted(self, urn: str, typ: str, deps: Iterable[str], parent: str, provider: str) -> bool:
        if typ.startswith("pulumi:providers:") or typ == "pulumi:pulumi:Stack":
            return True
        linked = [*deps, parent, provider.rsplit("::", 1)[0]]
        hit = urn in self.targets or (self.dependents and any(d in self.actual for d in linked))
        if hit:
            self.actual.add(urn)
            for d in linked:
                if d in self.skipped:
                    raise ResourceFailed(
                        f"Resource '{urn}' depends on '{d}' which was was not specified in "
                        f"--target list."
                    )
        return hit

    def may_delete(self, urn: str, deps: Iterable[str], parent: str, provider: str) -> bool:
        linked = [*deps, parent, provider.rsplit("::", 1)[0]]
        if urn in self.targets or (self.dependents and any(d in self.actual for d in linked)):
            self.actual.add(urn)
            return True
        return False
