"""Reading and writing the deployment contract of a model file, ``.onnx`` or engine (no torch).

:func:`read_deployment` is the one reader: an engine's header (:mod:`retina_edge.runtime.tensorrt.engine_file`)
or an ONNX file's ``metadata_props``. The ONNX side scans the file's top-level protobuf fields and
skips the graph, so it needs neither the onnx package nor an inference session, and reads a
multi-hundred-MB model's metadata in microseconds. :func:`embed_deployment` is the ONNX writer;
engines get theirs from :func:`retina_edge.runtime.tensorrt.engine_file.write_engine_file`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from retina_edge.contract import DeploymentMetadata, is_engine_path
from retina_edge.errors import RetinaEdgeError

#: ``ModelProto.metadata_props`` and, inside each entry, ``key`` and ``value`` (onnx.proto).
_METADATA_PROPS, _KEY, _VALUE = 14, 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def read_deployment(path: str | os.PathLike) -> DeploymentMetadata:
    """The typed contract of a deployed model file (engine or ONNX); clear errors for missing,
    damaged, foreign or newer files."""
    path = Path(path)
    if path.is_dir():  # "not found" for a folder that is there sent users looking for the wrong problem
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".onnx" or is_engine_path(p))[:3]
        raise RetinaEdgeError(f"{path} is a folder; a model is one file (.onnx, or an engine retina-edge built)"
                              + (f": it holds {', '.join(inside)}" if inside else ""))
    if not path.is_file():
        raise RetinaEdgeError(f"model file not found: {path}")
    if path.stat().st_size == 0:  # an interrupted copy or write: not "from another tool"
        raise RetinaEdgeError(f"{path} is empty (0 bytes): copy or build it again")
    if is_engine_path(path):
        from retina_edge.runtime.tensorrt.engine_file import read_engine_file

        return read_engine_file(path).deployment
    return DeploymentMetadata.from_props(onnx_metadata_props(path), source=str(path))


def onnx_metadata_props(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict, without parsing its graph."""
    props: dict[str, str] = {}
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        while handle.tell() < size:
            field, wire = _tag(handle, path)
            if wire == _LENGTH:
                length = _varint(handle, path)
                if field == _METADATA_PROPS:
                    data = handle.read(length)
                    if len(data) != length:
                        raise _damaged(path)
                    key, value = _entry(data, path)
                    props[key] = value
                else:
                    handle.seek(length, os.SEEK_CUR)
            elif wire == _VARINT:
                _varint(handle, path)
            elif wire in (_FIXED64, _FIXED32):
                handle.seek(8 if wire == _FIXED64 else 4, os.SEEK_CUR)
            else:
                raise _damaged(path)
        if handle.tell() != size:
            raise _damaged(path)
    return props


def embed_deployment(model_proto, metadata: DeploymentMetadata) -> None:  # noqa: ANN001 (onnx.ModelProto)
    """Write ``metadata`` into an ONNX model's ``metadata_props``, replacing our earlier entries and
    the simplifier's bookkeeping, keeping other tools' entries."""
    props = metadata.to_props()
    kept = [(p.key, p.value) for p in model_proto.metadata_props
            if p.key not in props and not p.key.startswith(("retina_edge.", "onnxsim."))]
    del model_proto.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def _damaged(path: str | os.PathLike) -> RetinaEdgeError:
    return RetinaEdgeError(f"{path} is not a readable ONNX model (truncated or damaged); export it again")


def _varint(handle: BinaryIO, path: str | os.PathLike) -> int:
    value = shift = 0
    while True:
        byte = handle.read(1)
        if not byte or shift > 63:
            raise _damaged(path)
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7


def _tag(handle: BinaryIO, path: str | os.PathLike) -> tuple[int, int]:
    key = _varint(handle, path)
    return key >> 3, key & 7


def _entry(data: bytes, path: str | os.PathLike) -> tuple[str, str]:
    """Key and value of one ``StringStringEntryProto``."""
    import io

    stream, fields = io.BytesIO(data), {_KEY: b"", _VALUE: b""}
    while stream.tell() < len(data):
        field, wire = _tag(stream, path)
        if wire != _LENGTH:
            raise _damaged(path)
        fields[field] = stream.read(_varint(stream, path))
    try:
        return fields[_KEY].decode(), fields[_VALUE].decode()
    except UnicodeDecodeError:
        raise _damaged(path) from None
