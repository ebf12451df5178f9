"""Reading pickled PyTorch checkpoints without running pickled code (a restricted unpickler).

NVIDIA/waveglow saves a whole ``glow.WaveGlow`` module object, so ``torch.load`` would need
NVIDIA's ``glow`` module and would run whatever the pickle asks for. This reader accepts only a
fixed list of globals (the classes such a checkpoint names, see ``ALLOWED_GLOBALS``) and maps
each one to an inert stand-in: module classes become ``PickledObject`` subclasses that only
record the state they are given, storage types become dtype markers, and the tensor-rebuilding
functions are this module's own. Any other global raises ``CheckpointError`` naming it, before
anything it names is looked up, imported or called.

Both container formats are read: the legacy one (torch < 1.6: five pickles back to back, then
the raw little-endian bytes of every storage) and the zip one (``<name>/data.pkl`` plus one
``<name>/data/<key>`` entry per storage). Tensors are rebuilt on the CPU whatever device the
file was saved from.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from ttscli.errors import CheckpointError

__all__ = [
    "ALLOWED_GLOBALS",
    "LEGACY_MAGIC_NUMBER",
    "PickledObject",
    "is_pickled_module",
    "module_attributes",
    "module_state_dict",
    "read_pickled_checkpoint",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
_MAX_MODULE_DEPTH = 64
_MAX_DEFLATE_RATIO = 1100  # deflate cannot expand data more than about 1032 times

# Storage classes (only ever used as dtype markers inside persistent ids).
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "torch.FloatStorage": torch.float32,
    "torch.HalfStorage": torch.float16,
    "torch.BFloat16Storage": torch.bfloat16,
    "torch.DoubleStorage": torch.float64,
    "torch.LongStorage": torch.int64,
    "torch.IntStorage": torch.int32,
    "torch.ShortStorage": torch.int16,
    "torch.CharStorage": torch.int8,
    "torch.ByteStorage": torch.uint8,
    "torch.BoolStorage": torch.bool,
}

# Classes of the pickled module tree; each becomes an inert PickledObject subclass.
# glow_old.* is NVIDIA/waveglow's first model class (its first published model pickles it);
# its coupling order differs (waveglow_layout.py marks such models alternate_halves).
_MODULE_CLASSES = frozenset(
    {
        "glow.WaveGlow",
        "glow.WN",
        "glow.Invertible1x1Conv",
        "glow_old.WaveGlow",
        "glow_old.WN",
        "glow_old.Invertible1x1Conv",
        "torch.nn.modules.conv.Conv1d",
        "torch.nn.modules.conv.ConvTranspose1d",
        "torch.nn.modules.container.ModuleList",
        "torch.nn.utils.weight_norm.WeightNorm",
    }
)

# Functions and plain containers, each handled by this module's own code.
_FUNCTIONS = frozenset(
    {
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch.nn.parameter.Parameter",  # torch 0.4 pickled parameters as Parameter(data, grad)
        "torch.nn.backends.thnn._get_thnn_function_backend",  # Module._backend before torch 1.2
        "collections.OrderedDict",
        "builtins.set",
        "__builtin__.set",  # protocol 2's name for builtins.set
    }
)

ALLOWED_GLOBALS: frozenset[str] = frozenset(_STORAGE_DTYPES) | _MODULE_CLASSES | _FUNCTIONS


class PickledObject:
    """Inert stand-in for a class a pickle names: records its arguments and state, runs nothing."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = object.__new__(cls)
        obj.__dict__["pickled_args"] = args
        obj.__dict__["pickled_state"] = {}
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise CheckpointError(f"pickled {self.qualname} has a non-dict state")
        self.__dict__["pickled_state"].update(state)

    def __repr__(self) -> str:
        return f"<pickled {self.qualname}>"


class _Storage:
    """One storage of the file: a flat CPU tensor, filled when its bytes are read."""

    __slots__ = ("dtype", "flat", "key")

    def __init__(self, key: str, dtype: torch.dtype, flat: torch.Tensor) -> None:
        self.key = key
        self.dtype = dtype
        self.flat = flat


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ascii(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only ALLOWED_GLOBALS, each to an object of this load."""

    def __init__(
        self,
        file: BinaryIO,
        allow_globals: bool,
        new_storage: Callable[[str, torch.dtype, int], torch.Tensor] | None,
    ) -> None:
        super().__init__(file, encoding="utf-8")
        self._allow_globals = allow_globals
        self._new_storage = new_storage
        self.storages: dict[str, _Storage] = {}
        self._storage_ids: set[int] = set()
        # Fresh stand-ins per load: whatever a pickle does to them stays inside this load.
        self._markers: dict[int, torch.dtype] = {}
        self._marker_objects: dict[str, object] = {}
        self._stub_classes: dict[str, type[PickledObject]] = {}
        self._stub_ids: set[int] = set()
        self._functions: dict[str, Callable[..., Any]] = {
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor_v2,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
            "torch.nn.parameter.Parameter": self._rebuild_parameter,
            "torch.nn.backends.thnn._get_thnn_function_backend": self._no_backend,
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "__builtin__.set": set,
        }

    # -- globals --------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        qualname = f"{module}.{name}"
        if not self._allow_globals or qualname not in ALLOWED_GLOBALS:
            raise CheckpointError(
                f"refusing the pickled global {qualname}: it is not one of the classes a "
                "Tacotron2/WaveGlow checkpoint uses (nothing from the file was run)"
            )
        if qualname in _STORAGE_DTYPES:
            if qualname not in self._marker_objects:
                marker = type(name, (), {"__slots__": ()})()
                self._marker_objects[qualname] = marker
                self._markers[id(marker)] = _STORAGE_DTYPES[qualname]
            return self._marker_objects[qualname]
        if qualname in _MODULE_CLASSES:
            if qualname not in self._stub_classes:
                stub = type(name, (PickledObject,), {"qualname": qualname, "__module__": __name__})
                self._stub_classes[qualname] = stub
                self._stub_ids.add(id(stub))
            return self._stub_classes[qualname]
        return self._functions[qualname]

    # -- persistent ids: storages and module classes --------------------------------------------
    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            raise CheckpointError(f"unexpected persistent id {type(pid).__name__}")
        tag = _ascii(pid[0])
        if tag == "module" and len(pid) >= 2:
            if id(pid[1]) not in self._stub_ids:
                raise CheckpointError("a module record names something that is not a module class")
            return pid[1]
        if tag == "storage" and len(pid) in (5, 6):
            return self._storage(*pid[1:])
        raise CheckpointError(f"unexpected persistent id {str(tag)[:40]!r}")

    def _storage(
        self, marker: Any, key: Any, location: Any, numel: Any, view: Any = None
    ) -> _Storage:
        dtype = self._markers.get(id(marker))
        key, location = _ascii(key), _ascii(location)
        if dtype is None or not isinstance(key, str) or not isinstance(location, str):
            raise CheckpointError("malformed storage record")
        if not _is_int(numel) or numel < 0:
            raise CheckpointError(f"storage {key} has an invalid size {numel!r}")
        if key in self.storages:
            root = self.storages[key]
            if root.dtype != dtype or root.flat.numel() != numel:
                raise CheckpointError(f"storage {key} is described twice, differently")
        else:
            if self._new_storage is None:
                raise CheckpointError("storage record outside the checkpoint object")
            root = _Storage(key, dtype, self._new_storage(key, dtype, numel))
            self.storages[key] = root
            self._storage_ids.add(id(root))
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise CheckpointError(f"storage {key} has a malformed view record")
        view_key, offset, size = _ascii(view[0]), view[1], view[2]
        if not (_is_int(offset) and _is_int(size) and 0 <= offset and 0 <= size):
            raise CheckpointError(f"storage view {view_key} has an invalid range")
        if offset + size > numel or not isinstance(view_key, str):
            raise CheckpointError(f"storage view {view_key} lies outside storage {key}")
        if view_key not in self.storages:
            storage = _Storage(view_key, dtype, root.flat[offset : offset + size])
            self.storages[view_key] = storage
            self._storage_ids.add(id(storage))
        return self.storages[view_key]

    # -- tensors ------------------------------------------------------------------------------
    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
        if id(storage) not in self._storage_ids or not isinstance(storage, _Storage):
            raise CheckpointError("a tensor refers to something that is not a storage")
        size, stride = tuple(size), tuple(stride)
        if not _is_int(offset) or offset < 0 or len(size) != len(stride):
            raise CheckpointError("a tensor has a malformed offset, size or stride")
        if not all(_is_int(v) and v >= 0 for v in size + stride):
            raise CheckpointError("a tensor has a negative or non-integer size or stride")
        base = storage.flat
        if all(size):
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= base.numel():
                raise CheckpointError(
                    f"a tensor of size {list(size)} reaches past the end of storage {storage.key}"
                )
        return torch.as_strided(base, size, stride, base.storage_offset() + offset)

    def _rebuild_tensor_v2(
        self,
        storage: Any,
        offset: Any,
        size: Any,
        stride: Any,
        requires_grad: Any = False,
        backward_hooks: Any = None,
        metadata: Any = None,
    ) -> torch.Tensor:
        if metadata:
            raise CheckpointError("tensors with conjugate/negative bits are not supported")
        return self._rebuild_tensor(storage, offset, size, stride)

    def _rebuild_parameter(self, data: Any, *_rest: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise CheckpointError("a parameter holds something that is not a tensor")
        return data

    @staticmethod
    def _no_backend(*_args: Any) -> None:
        return None


def _load_plain(f: BinaryIO) -> Any:
    """One pickle that may name no globals and no storages (the legacy header pickles)."""
    return _RestrictedUnpickler(f, allow_globals=False, new_storage=None).load()


def _read_legacy_header(f: BinaryIO) -> None:
    """The three header pickles: magic number, protocol version, system info."""
    magic = _load_plain(f)
    if not _is_int(magic) or magic != LEGACY_MAGIC_NUMBER:
        raise CheckpointError("not a PyTorch checkpoint (neither a zip archive nor legacy format)")
    version = _load_plain(f)
    if version != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError(f"unsupported legacy PyTorch protocol version {version!r}")
    if not isinstance(_load_plain(f), dict):
        raise CheckpointError("malformed legacy header")


def _read_legacy(f: BinaryIO, file_bytes: int) -> Any:
    _read_legacy_header(f)
    budget = [file_bytes]

    def new_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        nbytes = numel * _element_size(dtype)
        if nbytes > budget[0]:
            raise CheckpointError(
                f"storage {key} claims {nbytes} bytes, more than the file holds (truncated?)"
            )
        budget[0] -= nbytes
        return torch.empty(numel, dtype=dtype)

    unpickler = _RestrictedUnpickler(f, allow_globals=True, new_storage=new_storage)
    result = unpickler.load()
    keys = _load_plain(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise CheckpointError("malformed list of storage keys")
    if set(keys) - set(unpickler.storages) or len(set(keys)) != len(keys):
        raise CheckpointError("the storage key list does not match the storages the file uses")
    for key in keys:
        _read_legacy_storage(f, key, unpickler.storages[key])
    return result


def _read_legacy_storage(f: BinaryIO, key: str, storage: _Storage) -> None:
    """One storage's data: its element count (8 bytes), then its raw little-endian bytes."""
    header = f.read(8)
    if len(header) != 8:
        raise CheckpointError(f"file ends before the data of storage {key} (truncated)")
    count = int.from_bytes(header, "little", signed=True)
    if count != storage.flat.numel():
        raise CheckpointError(
            f"storage {key} holds {count} elements, the checkpoint expects {storage.flat.numel()}"
        )
    if not count:
        return
    raw = storage.flat.view(torch.uint8)
    got = f.readinto(memoryview(raw.numpy()))
    if got != raw.numel():
        raise CheckpointError(
            f"file ends inside the data of storage {key} (truncated): {got} of {raw.numel()} bytes"
        )


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError("zip archive without exactly one <name>/data.pkl entry")
        prefix = pickles[0][: -len("data.pkl")]
        order = "little"
        if prefix + "byteorder" in archive.namelist():
            order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order != "little":
            raise CheckpointError(f"unsupported byte order {order!r} in archive")

        def new_storage(key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
            name = f"{prefix}data/{key}"
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise CheckpointError(f"archive entry {name} is missing") from None
            nbytes = numel * _element_size(dtype)
            if info.file_size != nbytes:
                raise CheckpointError(
                    f"archive entry {name} holds {info.file_size} bytes, expected {nbytes}"
                )
            stored = info.compress_type == zipfile.ZIP_STORED
            if nbytes > (1 if stored else _MAX_DEFLATE_RATIO) * max(info.compress_size, 1):
                raise CheckpointError(f"archive entry {name} claims more bytes than it holds")
            flat = torch.empty(numel, dtype=dtype)
            if nbytes:
                with archive.open(info) as entry:
                    got = entry.readinto(memoryview(flat.view(torch.uint8).numpy()))
                if got != nbytes:
                    raise CheckpointError(f"archive entry {name} is short")
            return flat

        data = io.BytesIO(archive.read(pickles[0]))
        return _RestrictedUnpickler(data, allow_globals=True, new_storage=new_storage).load()


def read_pickled_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Unpickle a PyTorch checkpoint file (zip or legacy) without running any pickled code.

    Returns the saved object with tensors rebuilt on the CPU and module objects as
    ``PickledObject`` stand-ins. Raises ``CheckpointError`` for a global outside
    ``ALLOWED_GLOBALS`` (naming it) and for a truncated, corrupt or foreign file.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _read_zip(path)
        with open(path, "rb") as f:
            return _read_legacy(f, os.fstat(f.fileno()).st_size)
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except Exception as exc:  # the bytes are untrusted: any failure means a damaged file
        reason = f"{type(exc).__name__}: {exc}"[:200]
        raise CheckpointError(f"{path} is truncated or corrupt ({reason})") from exc


def is_pickled_module(obj: Any) -> bool:
    """Whether ``obj`` is a stand-in for a pickled nn.Module (not a hook object)."""
    return isinstance(obj, PickledObject) and not obj.qualname.endswith(".WeightNorm")


def module_attributes(obj: PickledObject) -> dict[str, Any]:
    """The plain attributes (names without a leading underscore) of a pickled module."""
    return {k: v for k, v in obj.pickled_state.items() if not k.startswith("_")}


def _weight_norm_dims(state: dict[str, Any]) -> dict[str, int]:
    hooks = state.get("_forward_pre_hooks") or {}
    dims: dict[str, int] = {}
    if not isinstance(hooks, dict):
        return dims
    for hook in hooks.values():
        if isinstance(hook, PickledObject) and hook.qualname.endswith(".WeightNorm"):
            name = hook.pickled_state.get("name", "weight")
            dim = hook.pickled_state.get("dim", 0)
            if isinstance(name, str) and _is_int(dim):
                dims[name] = dim
    return dims


def _collect_tensors(state: dict[str, Any], prefix: str, out: dict[str, torch.Tensor]) -> None:
    """A pickled module's own parameters and persistent buffers, named as state_dict() would."""
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        tensors = state.get(group) or {}
        if not isinstance(tensors, dict):
            raise CheckpointError(f"{prefix}{group} of the pickled module is not a dict")
        for name, tensor in tensors.items():
            if tensor is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
                raise CheckpointError(f"{prefix}{name} is not a tensor")
            out[prefix + name] = tensor


def module_state_dict(root: PickledObject) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Flatten a pickled module tree the way ``nn.Module.state_dict()`` would.

    Walks ``_parameters``, ``_buffers`` (skipping non-persistent ones) and ``_modules`` in
    order. Plain tensor attributes (such as the stale ``weight`` a weight-normed convolution
    carries next to ``weight_g``/``weight_v``) are not part of it. Also returns, for each
    weight-normed parameter, its weight-norm dim: ``{"WN.0.start.weight": 0, ...}``.
    """
    out: dict[str, torch.Tensor] = OrderedDict()
    norms: dict[str, int] = {}
    seen: set[int] = set()

    def visit(obj: Any, prefix: str, depth: int) -> None:
        if not is_pickled_module(obj):
            raise CheckpointError(f"{prefix or 'the model'} is not a pickled module")
        if depth > _MAX_MODULE_DEPTH or id(obj) in seen:
            raise CheckpointError("the pickled module tree is cyclic or too deep")
        seen.add(id(obj))
        state = obj.pickled_state
        _collect_tensors(state, prefix, out)
        for name, dim in _weight_norm_dims(state).items():
            norms[prefix + name] = dim
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise CheckpointError(f"{prefix}_modules of the pickled module is not a dict")
        for name, child in children.items():
            if child is not None:
                visit(child, f"{prefix}{name}.", depth + 1)

    visit(root, "", 0)
    return out, norms
