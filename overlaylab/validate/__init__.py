"""The post-deploy validator: does the lab do what the seed shows, and if not, what is wrong.

Each check yields records ``(check, subject, expected, actual, ok)``. Checks of things that
converge (TTL'd node keys, gossip, the overlay's neighbour tables) are retried until they pass
or the timeout is spent. The seed's name rule is probed once, at the end, and leaves nothing.
When a cross-host ping fails, the layers under it are examined too, and the report ends with
one diagnosis line per broken layer (:mod:`.diagnose`).

    python -m overlaylab.validate --stack local          # spec from stacks/Pulumi.local.yaml
    python -m overlaylab.validate --outputs out.json     # from `pulumi stack output --json`
    python -m overlaylab.validate --spec-json '{...}'    # what the pulumi step runs
    python -m overlaylab.validate --stack local --junit report.xml

Modules: :mod:`.records` (records, clients), :mod:`.checks` (etcd, keys, network, name rule),
:mod:`.layers` (underlay, VXLAN, serf, MTU, sandbox), :mod:`.overlay` (pings, path MTU),
:mod:`.probes` (in-namespace sockets), :mod:`.counters` (silent faults), :mod:`.diagnose`,
:mod:`.report`, :mod:`.cli`.
"""

from overlaylab.validate.diagnose import diagnose
from overlaylab.validate.records import Lab, Result
from overlaylab.validate.report import as_json, junit, summary
from overlaylab.validate.run import validate

__all__ = ["Lab", "Result", "as_json", "diagnose", "junit", "summary", "validate"]
