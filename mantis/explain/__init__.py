"""When to trust a density: occlusion, attributions, representation similarity, shift scores.

`mantis explain` writes the report (`explain_run`); `ShiftScorer` adds the per-object shift
columns to `mantis predict` output from the reference that training stores beside the
checkpoint (`fit_shift_reference`).
"""

from mantis.explain._cka import hsic_unbiased, linear_cka, linear_cka_matrix
from mantis.explain._embed import collect_layers, embed_arrays
from mantis.explain._field import FieldReference
from mantis.explain._inputs import (
    INPUT_FEATURE_KINDS,
    band_noise_levels,
    colour_columns,
    input_features,
    magnitude_columns,
)
from mantis.explain._morphology import native_morphology
from mantis.explain._run import ExplainError, explain_run, network_layers
from mantis.explain._shift import (
    SHIFT_COLUMNS,
    SHIFT_METHODS,
    SHIFT_SCORES,
    ShiftReference,
    reference_path,
    weights_fingerprint,
)
from mantis.explain._shift_run import (
    FIELD_INPUT_PREFIX,
    ShiftScorer,
    describe_rows,
    ensure_shift_reference,
    fit_shift_reference,
    shift_calibration,
    shift_note,
)

__all__ = [
    "FIELD_INPUT_PREFIX",
    "INPUT_FEATURE_KINDS",
    "SHIFT_COLUMNS",
    "SHIFT_METHODS",
    "SHIFT_SCORES",
    "ExplainError",
    "FieldReference",
    "ShiftReference",
    "ShiftScorer",
    "band_noise_levels",
    "collect_layers",
    "colour_columns",
    "describe_rows",
    "embed_arrays",
    "ensure_shift_reference",
    "explain_run",
    "fit_shift_reference",
    "hsic_unbiased",
    "input_features",
    "linear_cka",
    "linear_cka_matrix",
    "magnitude_columns",
    "native_morphology",
    "network_layers",
    "reference_path",
    "shift_calibration",
    "shift_note",
    "weights_fingerprint",
]
