"""What the split graphs look like from outside: tensor names and the split's error.

Also how a merged voice model (``graph_merge``) names its branches.

Kept apart from ``graph_split`` so that loading an already split voice does not
import ``onnx`` (14 MB of the server's resident memory; only a split needs it).
"""

from __future__ import annotations

LATENT_NAME = "z"
PRIOR_NAME = "z_p"
MASK_NAME = "y_mask"
SPEAKER_EMBEDDING_NAME = "g"
DURATIONS_NAME = "durations"
SPAN_NAME = "span"
"""The decoder's ``[start, end)`` latent frames whose audio it returns (int64 [2]): its
first upsampling stage runs over every frame given, the stages after it only over
these (see ``graph_split.add_span_input``)."""
TRIM_NAME = "trim"
"""Frames the separate flow drops (int64 [2]: left, right) after each coupling layer
but the last, each of which needs that much less context than the one before (see
``graph_split.add_trim_input``)."""
TRIMMED_LAYERS_KEY = "trimmed_layers"
"""The flow's metadata: how many layers drop ``trim`` frames."""


ENCODER_BRANCH = "encoder"
FLOW_BRANCH = "flow"
DECODER_BRANCH = "decoder"
"""The graphs of a voice, by the names its merged model gives their branches."""

BRANCHES_KEY = "branches"
"""A merged voice model's metadata: its branches' inputs, outputs and metadata (JSON),
in order (see ``graph_merge``)."""


def branch_flag(branch: str) -> str:
    """The bool input of a merged voice model that runs ``branch``."""
    return f"run_{branch}"


def branch_tensor(branch: str, name: str) -> str:
    """A branch's tensor ``name`` in a merged voice model."""
    return f"{branch}/{name}"


class SplitError(ValueError):
    """The graph does not have the structure of a Piper VITS voice."""
