"""Reading a `mantis train` checkpoint without ever running code stored in it.

A checkpoint is a torch zip archive whose ``data.pkl`` is a pickle. Unpickling can call any
importable function, so a checkpoint from someone else must be treated as hostile. Before
torch sees the file, every global the pickle names is read with `pickletools` (which decodes
opcodes without executing them) and compared with `ALLOWED_GLOBALS`, exactly the types that
`mantis train` (Lightning and LightningCLI, see docs/interfaces.md) writes. Only then is the
file loaded with ``torch.load(weights_only=True)``, whose restricted unpickler is a second,
independent barrier. Files that are empty, text, truncated or not zip archives are named in one
line saying what was expected.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import Any

from mantis.exceptions import ConfigError

__all__ = [
    "ALLOWED_GLOBALS",
    "UnsafeCheckpointError",
    "pickle_globals",
    "plain_metadata",
    "read_checkpoint",
]

_STORAGES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
             "Bool")  # fmt: skip
ALLOWED_GLOBALS: frozenset[str] = frozenset(
    {
        # the containers and tensors of a Lightning checkpoint (state_dict, optimizer states)
        "collections.OrderedDict",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_parameter",
        *(f"torch.{kind}Storage" for kind in _STORAGES),
    }
)
"""``module.name`` of every global a checkpoint written by ``mantis train`` may contain.

Found by listing the globals of checkpoints of every preset in ``configs/train`` (hyper-
parameters, loops, callbacks, optimizer and scheduler states are plain dicts, lists, numbers
and strings); storages of every numeric dtype are allowed so that half-precision or integer
buffers load too.
"""

_EXPECTED = "a .ckpt file written by `mantis train` (a torch zip archive)"
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})  # fmt: skip
_MEMO_PUT = frozenset({"BINPUT", "LONG_BINPUT", "PUT"})
_MEMO_GET = frozenset({"BINGET", "LONG_BINGET", "GET"})


class UnsafeCheckpointError(ConfigError):
    """A checkpoint names a global that mantis never writes: loading it could run code."""


def pickle_globals(data: bytes) -> list[str]:
    """Return every ``module.name`` a pickle would import, without unpickling it.

    Parameters
    ----------
    data : bytes
        The pickle stream.

    Returns
    -------
    list of str
        In stream order; ``'<unresolved>'`` where the name cannot be read statically
        (a ``STACK_GLOBAL`` fed by anything but strings, or an extension code).

    Raises
    ------
    ValueError
        If the stream is not a complete pickle.
    """
    found: list[str] = []
    memo: dict[int, Any] = {}
    recent: list[Any] = []  # the last two values pushed: what a STACK_GLOBAL reads
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            found.append(f"{module}.{attr}")
            pushed = None
        elif name == "STACK_GLOBAL":
            pair = recent[-2:]
            ok = len(pair) == 2 and all(isinstance(v, str) for v in pair)
            found.append(f"{pair[0]}.{pair[1]}" if ok else "<unresolved>")
            pushed = None
        elif name.startswith("EXT"):
            found.append("<unresolved>")
            pushed = None
        elif name in _MEMO_PUT or name == "MEMOIZE":
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = recent[-1] if recent else None
            continue  # storing in the memo leaves the stack as it is
        elif name in _MEMO_GET:
            pushed = memo.get(int(arg))
        elif name in _STRING_OPS:
            pushed = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
        else:
            pushed = None
        recent = [*recent[-1:], pushed]
    return found


def plain_metadata(value: Any) -> Any:
    """Return ``value`` as plain JSON types (numpy scalars and arrays become floats and lists).

    Metadata stored in a checkpoint must stay within `ALLOWED_GLOBALS`; a numpy scalar would
    be pickled as a call to numpy and the checkpoint then refused.

    Raises
    ------
    ConfigError
        If ``value`` holds something that has no JSON form.
    """
    import json

    def default(item: Any) -> Any:
        if hasattr(item, "tolist"):
            return item.tolist()
        raise TypeError(f"{type(item).__name__} has no JSON form")

    try:
        return json.loads(json.dumps(value, default=default))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"checkpoint metadata must be JSON-like: {err}") from None


def _pickle_of(path: Path) -> bytes:
    """Return the ``data.pkl`` member of a torch zip checkpoint."""
    size = path.stat().st_size
    if size == 0:
        raise ConfigError(f"checkpoint {str(path)!r} is empty (0 bytes); expected {_EXPECTED}")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            head = fh.read(4)
        what = ("truncated or damaged" if head == b"PK\x03\x04"
                else "a raw pickle" if head[:1] == b"\x80" else "not a zip archive")  # fmt: skip
        raise ConfigError(
            f"checkpoint {str(path)!r} is {what} ({size} bytes); expected {_EXPECTED}"
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise ConfigError(
                    f"checkpoint {str(path)!r} is a zip archive without one data.pkl; "
                    f"expected {_EXPECTED}"
                )
            return archive.read(names[0])
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ConfigError(
            f"checkpoint {str(path)!r} is truncated or damaged ({err}); expected {_EXPECTED}"
        ) from None


def read_checkpoint(ckpt: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Load a `mantis train` checkpoint, refusing anything that could run code.

    Parameters
    ----------
    ckpt : path-like
        The checkpoint file.
    device : str
        ``map_location`` of the tensors.

    Returns
    -------
    dict
        The checkpoint, with at least ``'hyper_parameters'``, ``'state_dict'`` and ``'mantis'``.

    Raises
    ------
    UnsafeCheckpointError
        If the pickle names a global outside `ALLOWED_GLOBALS` (nothing is unpickled).
    ConfigError
        If the file is missing, empty, not a torch zip archive, truncated, or not written by
        ``mantis train``.
    """
    import torch

    path = Path(ckpt)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    data = _pickle_of(path)
    try:
        names = pickle_globals(data)
    except ValueError as err:
        raise ConfigError(
            f"checkpoint {str(path)!r} has a damaged pickle ({err}); expected {_EXPECTED}"
        ) from None
    foreign = sorted(set(names) - ALLOWED_GLOBALS)
    if foreign:
        raise UnsafeCheckpointError(
            f"checkpoint {str(path)!r} refers to {', '.join(foreign[:3])}, which mantis "
            "checkpoints never contain; refusing to load it (unpickling it could run code)"
        )
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"checkpoint {str(path)!r} is unreadable: {first}") from None
    if not isinstance(checkpoint, dict) or not {"mantis", "hyper_parameters"} <= set(checkpoint):
        raise ConfigError(f"checkpoint {str(path)!r} was not written by `mantis train`")
    return checkpoint
