"""The shift score's field part, which needs the whole catalogue: one pass over the parts.

Each part holds the per-object field inputs (``_field_*`` columns, `ShiftScorer.columns`);
once every row is predicted, `with_field_part` reads those few columns of all parts, tests the
catalogue's sky cells (`ShiftScorer.with_field_part`) and writes a copy of each part with
``field_shift_pvalue`` filled, ``shift_pvalue`` and ``shifted`` combined and the inputs
dropped. The original parts stay untouched until the merge has succeeded, so a failure here
is retried from them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["with_field_part"]

_KEPT = ("ra", "dec", "valid", "shift_pvalue")


def with_field_part(parts: list[Path], scorer: Any) -> list[Path]:
    """Return parts with the field part applied (written beside them), or ``parts`` as is.

    Parameters
    ----------
    parts : list of Path
        Part files, in catalogue order.
    scorer : ShiftScorer
        The checkpoint's scorer (its reference holds the field test).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mantis.explain import FIELD_INPUT_PREFIX

    names = pq.read_schema(parts[0]).names if parts else []
    hidden = [n for n in names if n.startswith(FIELD_INPUT_PREFIX)]
    if not hidden:
        return parts
    light = [pq.read_table(p, columns=[*_KEPT, *hidden]).to_pandas() for p in parts]
    lengths = [len(frame) for frame in light]
    whole = scorer.with_field_part(pd.concat(light, ignore_index=True))
    out, start = [], 0
    for path, n in zip(parts, lengths, strict=True):
        table = pq.read_table(path)
        table = table.drop_columns([c for c in hidden if c in table.column_names])
        rows = whole.iloc[start : start + n]
        for name in ("shift_pvalue", "shifted", "field_shift_pvalue"):
            values = rows[name].to_numpy()
            column = pa.array(values.astype(bool) if name == "shifted" else values)
            table = table.set_column(table.schema.get_field_index(name), name, column)
        final = path.with_name(f"field-{path.name}")
        tmp = final.with_name(f".{final.name}.tmp")
        pq.write_table(table, tmp)
        tmp.replace(final)
        out.append(final)
        start += n
    return out
