"""Bounds check of a .tflite flatbuffer before a runtime sees it.

tflite-runtime 2.14 builds the model without verifying it: a truncated file (a copy cut
short on a flaky link) crashes the whole agent with a segmentation fault. This walks the
parts of the TFLite schema that point into the file (the subgraphs and their tensor and
operator vectors, and the weight buffers) and refuses any reference past its end.
It is not a full schema verifier; ai-edge-litert verifies on its own.
"""

from __future__ import annotations

import struct
from pathlib import Path

# Field indices of the TFLite schema (schema.fbs): table Model, SubGraph and Buffer.
_MODEL_SUBGRAPHS, _MODEL_BUFFERS = 2, 4
_SUBGRAPH_TENSORS, _SUBGRAPH_OPERATORS = 0, 3
_BUFFER_DATA, _BUFFER_OFFSET, _BUFFER_SIZE = 0, 1, 2


class FlatbufferError(ValueError):
    """A reference inside the flatbuffer points outside the file."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def unpack(self, fmt: str, pos: int) -> int:
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > len(self.data):
            raise FlatbufferError(f"reference to byte {pos} past the end ({len(self.data)} bytes)")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int) -> tuple[int, int, int]:
        """(table position, vtable position, vtable size)."""
        vtable = pos - self.unpack("<i", pos)
        return pos, vtable, self.unpack("<H", vtable)

    def field(self, table: tuple[int, int, int], index: int) -> int | None:
        pos, vtable, vsize = table
        slot = 4 + 2 * index
        if slot + 2 > vsize:
            return None
        offset = self.unpack("<H", vtable + slot)
        return pos + offset if offset else None

    def ref(self, pos: int) -> int:
        return pos + self.unpack("<I", pos)

    def vector(self, pos: int, element_size: int) -> tuple[int, int]:
        """(first element position, length), checked to lie inside the file."""
        start = self.ref(pos)
        length = self.unpack("<I", start)
        end = start + 4 + length * element_size
        if end > len(self.data):
            raise FlatbufferError(
                f"a vector of {length} elements ends at byte {end}, past the end "
                f"({len(self.data)} bytes)"
            )
        return start + 4, length

    def tables(self, pos: int) -> list[tuple[int, int, int]]:
        first, length = self.vector(pos, 4)
        return [self.table(self.ref(first + 4 * i)) for i in range(length)]


def check_tflite_bounds(path: Path) -> None:
    """Raise FlatbufferError when the model file references bytes it does not have."""
    check_tflite_bytes(Path(path).read_bytes())


def check_tflite_bytes(data: bytes) -> None:
    r = _Reader(data)
    model = r.table(r.unpack("<I", 0))
    subgraphs = r.field(model, _MODEL_SUBGRAPHS)
    if subgraphs is None:
        raise FlatbufferError("the model has no subgraphs")
    for subgraph in r.tables(subgraphs):
        for index in (_SUBGRAPH_TENSORS, _SUBGRAPH_OPERATORS):
            field = r.field(subgraph, index)
            if field is not None:
                r.tables(field)
    buffers = r.field(model, _MODEL_BUFFERS)
    for buffer in r.tables(buffers) if buffers is not None else []:
        data_field = r.field(buffer, _BUFFER_DATA)
        if data_field is not None:
            r.vector(data_field, 1)
        # Models over 2 GB keep weights after the flatbuffer: offset and size in the file.
        offset_field = r.field(buffer, _BUFFER_OFFSET)
        size_field = r.field(buffer, _BUFFER_SIZE)
        if offset_field is not None and size_field is not None:
            offset, size = r.unpack("<Q", offset_field), r.unpack("<Q", size_field)
            if offset > 1 and offset + size > len(data):
                raise FlatbufferError(
                    f"weights at bytes {offset}..{offset + size} lie past the end "
                    f"({len(data)} bytes)"
                )
