"""A picture of the lab: the seed's overlay diagram drawn from the validation spec, coloured by
the validator's records, as one self-contained HTML page.

    from overlaylab.picture import page
    html = page(spec, results, facts, seconds=1.3, at="2026-12-01T21:20:00Z", stack="local")

Modules: :mod:`.model` (elements, their ids and the checks about each), :mod:`.graph` (the
Graphviz graph and its SVG), :mod:`.page` (the HTML). Written by ``python -m
overlaylab.validate --html FILE`` (``--plan``: the stack as configured, no lab touched) and by
the stand-in's ``up``, next to the stack's state.
"""

from overlaylab.picture.graph import PictureError, svg
from overlaylab.picture.model import Picture, build, element_ids
from overlaylab.picture.page import page

__all__ = ["Picture", "PictureError", "build", "element_ids", "page", "svg"]
