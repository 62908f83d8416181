"""A TensorFlow-free reader of TensorFlow V2 checkpoints (the "tensor bundle"), for the official networks.

The authors released their networks as TF 1.8 checkpoints (docs/paper.md §9): ``PREFIX.index`` and
``PREFIX.data-00000-of-00001``. Reading them needs no TensorFlow; the format is small:

- ``PREFIX.index`` is a LevelDB-format table (SSTable): data blocks of prefix-compressed sorted key/value
  entries, an index block pointing at them, and a 48-byte footer ending in the table magic. Every block is
  followed by a compression byte and a masked CRC-32C of the block and that byte.
- Its entry with the empty key is a ``BundleHeaderProto`` (number of shards, endianness, version); every
  other key is a tensor's name with a ``BundleEntryProto``: dtype, shape, shard, offset, size and the
  masked CRC-32C of the tensor's bytes.
- ``PREFIX.data-SSSSS-of-NNNNN`` hold the tensors' raw bytes, little-endian, row-major (C order); a string
  tensor stores its lengths as varints, a checksum of them, then the bytes.

Both protobufs are decoded here from the wire format, and every block and tensor is checked against its
CRC-32C (computed with NumPy over many lanes at once, a few seconds for the 450 MB separation network).
Anything this reader cannot use raises :class:`TFCheckpointError` naming the file and the problem: a
missing, truncated or foreign file, a checksum mismatch, a missing shard, a partitioned (sliced)
variable, a big-endian bundle, a dtype without a NumPy equivalent.

Typical use::

    bundle = TFCheckpoint("nets/shift/net.tf-650000")
    bundle.shapes()["im/conv1/weights"]          # (5, 7, 7, 3, 64)
    weights = bundle.read("im/conv1/weights")     # np.ndarray float32
    everything = read_tf_checkpoint("nets/shift/net.tf-650000")
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avlib.checkpoint import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression byte + masked CRC-32C
HEADER_KEY = b""
#: ``kTensorBundleVersion``: the bundle layout this reader knows.
BUNDLE_VERSION = 1

#: TF ``DataType`` enum -> NumPy dtype (little-endian). bfloat16 (14) is widened to float32 exactly.
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 8: np.dtype("<c8"), 9: np.dtype("<i8"), 10: np.dtype("?"), 17: np.dtype("<u2"),
    18: np.dtype("<c16"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
DT_STRING = 7
DT_BFLOAT16 = 14
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
               8: "complex64", 9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128",
               19: "float16", 20: "resource", 21: "variant", 22: "uint32", 23: "uint64"}


class TFCheckpointError(CheckpointError):
    """A TensorFlow checkpoint that cannot be read: missing, truncated, foreign, corrupt or unsupported."""


# ------------------------------------------------------------------------------------------------- CRC-32C

def _crc32c_table() -> np.ndarray:
    """Byte table of the reflected Castagnoli polynomial 0x82F63B78."""
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(0x82F63B78), table >> 1).astype(np.uint32)
    return table


_TABLE = _crc32c_table()


def _crc32c_serial(data: bytes | np.ndarray, crc: int = 0) -> int:
    """CRC-32C of ``data`` continuing from ``crc`` (0 to start), one byte at a time."""
    table = _TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = int(table[(crc ^ byte) & 0xFF]) ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _gf2_apply(matrix: list[int], vector: int) -> int:
    """A 32x32 matrix over GF(2), stored as its 32 columns, times a 32-bit vector."""
    result = 0
    column = 0
    while vector:
        if vector & 1:
            result ^= matrix[column]
        vector >>= 1
        column += 1
    return result


def _zeros_operator(num_bytes: int) -> list[int]:
    """The linear map taking the CRC register before ``num_bytes`` zero bytes to the register after them."""
    operator = [1 << i for i in range(32)]  # identity
    step = [0x82F63B78] + [1 << i for i in range(31)]  # one zero bit
    for _ in range(3):  # one zero byte = 8 zero bits
        step = [_gf2_apply(step, column) for column in step]
    remaining = num_bytes
    while remaining:
        if remaining & 1:
            operator = [_gf2_apply(step, column) for column in operator]
        step = [_gf2_apply(step, column) for column in step]
        remaining >>= 1
    return operator


def crc32c(data: bytes | memoryview | np.ndarray) -> int:
    """CRC-32C (Castagnoli) of ``data``, as ``crc32c::Value`` in TF and LevelDB.

    Large inputs are split into equal lanes whose CRCs NumPy computes side by side, then combined:
    CRC(A + B) = Z_len(B)(CRC(A)) ^ CRC(B), Z_n the (linear) effect of n zero bytes on the register.
    """
    buffer = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    size = buffer.size
    lane = max(1024, math.isqrt(size))
    lanes = size // lane
    if lanes < 2:
        return _crc32c_serial(buffer)
    columns = np.ascontiguousarray(buffer[: lanes * lane].reshape(lanes, lane).T)  # (lane, lanes)
    registers = np.full(lanes, 0xFFFFFFFF, dtype=np.uint32)
    table = _TABLE
    for row in columns:
        registers = table[(registers ^ row) & 0xFF] ^ (registers >> 8)
    registers ^= np.uint32(0xFFFFFFFF)
    shift = _zeros_operator(lane)
    crc = int(registers[0])
    for value in registers[1:]:
        crc = _gf2_apply(shift, crc) ^ int(value)
    tail = buffer[lanes * lane:]
    if tail.size:
        crc = _gf2_apply(_zeros_operator(tail.size), crc) ^ _crc32c_serial(tail)
    return crc


def unmask_crc(masked: int) -> int:
    """LevelDB's stored checksums are masked: rotated right by 15 bits plus 0xa282ead8."""
    rotated = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


# ------------------------------------------------------------------------------------ varints and protobuf

def _varint(data: bytes, position: int, where: str) -> tuple[int, int]:
    """(value, next position) of the base-128 varint at ``position``."""
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise TFCheckpointError(f"{where}: a varint runs past its record (corrupt or truncated)")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _protobuf_fields(data: bytes, where: str) -> dict[int, list[int | bytes]]:
    """Field number -> values of a protobuf message: ints for varint and fixed fields, bytes for nested ones."""
    fields: dict[int, list[int | bytes]] = {}
    position = 0
    while position < len(data):
        tag, position = _varint(data, position, where)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, position = _varint(data, position, where)
        elif wire_type == 1:
            value, position = int.from_bytes(data[position : position + 8], "little"), position + 8
        elif wire_type == 2:
            length, position = _varint(data, position, where)
            value, position = data[position : position + length], position + length
        elif wire_type == 5:
            value, position = int.from_bytes(data[position : position + 4], "little"), position + 4
        else:
            raise TFCheckpointError(f"{where}: protobuf wire type {wire_type} is not one TF writes (corrupt record)")
        if position > len(data) or number == 0:
            raise TFCheckpointError(f"{where}: a protobuf field runs past its record (corrupt or truncated)")
        fields.setdefault(number, []).append(value)
    return fields


def _int(fields: dict[int, list], number: int, default: int = 0) -> int:
    """The last value of a scalar int field (protobuf's rule for repeated scalars), as a signed 64-bit int."""
    value = fields.get(number, [default])[-1]
    return value - (1 << 64) if value >= 1 << 63 else value


# --------------------------------------------------------------------------------------------- the table

def _read_block(index: bytes, offset: int, size: int, path: Path, what: str) -> bytes:
    """The contents of the table block at ``offset``, its trailer checked."""
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(index) - FOOTER_SIZE:
        raise TFCheckpointError(f"{path}: the {what} block [{offset}, {end}) lies beyond the table's "
                                f"{len(index)} bytes (truncated)")
    block = index[offset : offset + size]
    compression = index[offset + size]
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    if unmask_crc(stored) != crc32c(index[offset : offset + size + 1]):
        raise TFCheckpointError(f"{path}: the {what} block at byte {offset} fails its CRC-32C check (corrupt)")
    if compression != 0:
        raise TFCheckpointError(f"{path}: the {what} block is compressed (type {compression}); TF writes "
                                "checkpoint indexes uncompressed, and this reader reads only those")
    return block


def _block_entries(block: bytes, path: Path, what: str) -> list[tuple[bytes, bytes]]:
    """(key, value) pairs of a table block: each key shares a prefix with the previous one."""
    if len(block) < 4:
        raise TFCheckpointError(f"{path}: the {what} block is too short to hold its restart count (corrupt)")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    if end < 0:
        raise TFCheckpointError(f"{path}: the {what} block claims {restarts} restart points (corrupt)")
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    position = 0
    where = f"{path} ({what} block)"
    while position < end:
        shared, position = _varint(block, position, where)
        unshared, position = _varint(block, position, where)
        value_length, position = _varint(block, position, where)
        if shared > len(key) or position + unshared + value_length > end:
            raise TFCheckpointError(f"{where}: an entry runs past the block (corrupt)")
        key = key[:shared] + block[position : position + unshared]
        position += unshared
        entries.append((key, block[position : position + value_length]))
        position += value_length
    return entries


def _table_entries(path: Path) -> list[tuple[bytes, bytes]]:
    """All (key, value) entries of the LevelDB-format table at ``path``, in key order."""
    try:
        index = path.read_bytes()
    except FileNotFoundError:
        raise TFCheckpointError(f"{path}: no such checkpoint index; a TF checkpoint PREFIX has PREFIX.index "
                                "and PREFIX.data-00000-of-00001 beside it") from None
    except IsADirectoryError:
        raise TFCheckpointError(f"{path}: is a directory, not a checkpoint index") from None
    if len(index) < FOOTER_SIZE:
        raise TFCheckpointError(f"{path}: {len(index)} bytes, shorter than a table footer; truncated or not a "
                                "TensorFlow checkpoint index")
    (magic,) = struct.unpack_from("<Q", index, len(index) - 8)
    if magic != TABLE_MAGIC:
        raise TFCheckpointError(f"{path}: not a TensorFlow checkpoint index (no table magic at its end); the file "
                                "is foreign or truncated")
    footer = index[len(index) - FOOTER_SIZE :]
    where = f"{path} (footer)"
    _, position = _varint(footer, 0, where)  # metaindex offset: TF writes no filters or other meta blocks
    _, position = _varint(footer, position, where)
    index_offset, position = _varint(footer, position, where)
    index_size, _ = _varint(footer, position, where)
    entries: list[tuple[bytes, bytes]] = []
    for last_key, handle in _block_entries(_read_block(index, index_offset, index_size, path, "index"), path, "index"):
        offset, position = _varint(handle, 0, f"{path} (index entry)")
        size, _ = _varint(handle, position, f"{path} (index entry)")
        block_entries = _block_entries(_read_block(index, offset, size, path, "data"), path, "data")
        if block_entries and block_entries[-1][0] > last_key:
            raise TFCheckpointError(f"{path}: a data block holds keys past its index entry (corrupt)")
        entries.extend(block_entries)
    keys = [key for key, _ in entries]
    if keys != sorted(set(keys)):
        raise TFCheckpointError(f"{path}: the table's keys are not strictly sorted (corrupt)")
    return entries


# ------------------------------------------------------------------------------------------- the bundle

@dataclass(frozen=True)
class TensorEntry:
    """Where and what one tensor is: ``dtype`` is TF's name (``"float32"``, ``"string"`` ...)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int
    crc32c: int  # unmasked CRC-32C of the tensor's bytes


def checkpoint_prefix(path: str | os.PathLike) -> Path:
    """The checkpoint prefix of ``path``: the prefix itself, or its ``.index`` or ``.data-*`` file."""
    text = os.fspath(path)
    if text.endswith(".index"):
        return Path(text[: -len(".index")])
    head, separator, tail = text.rpartition(".data-")
    if separator and "-of-" in tail:
        return Path(head)
    return Path(text)


class TFCheckpoint:
    """A TF V2 checkpoint (tensor bundle), read without TensorFlow (see the module docstring).

    Args:
        prefix: the checkpoint prefix, e.g. ``nets/shift/net.tf-650000`` (its ``.index`` path also works).

    Opening reads and checks the index (header, entries, every shard present and long enough); tensors are
    read, checksummed and decoded on :meth:`read`.
    """

    def __init__(self, prefix: str | os.PathLike):
        self.prefix = checkpoint_prefix(prefix)
        self.index_path = Path(f"{self.prefix}.index")
        entries = _table_entries(self.index_path)
        if not entries or entries[0][0] != HEADER_KEY:
            raise TFCheckpointError(f"{self.index_path}: a table without the bundle header (empty key); "
                                    "not a TensorFlow checkpoint index")
        header = _protobuf_fields(entries[0][1], f"{self.index_path} (header)")
        self.num_shards = _int(header, 1)
        if _int(header, 2) != 0:
            raise TFCheckpointError(f"{self.index_path}: a big-endian checkpoint; this reader reads little-endian ones")
        version = _protobuf_fields(header[3][-1], f"{self.index_path} (version)") if 3 in header else {}
        if _int(version, 2) > BUNDLE_VERSION:  # VersionDef.min_consumer
            raise TFCheckpointError(f"{self.index_path}: needs a bundle reader of version {_int(version, 2)}; this one "
                                    f"is version {BUNDLE_VERSION}")
        if self.num_shards < 1:
            raise TFCheckpointError(f"{self.index_path}: the header gives {self.num_shards} shards (corrupt)")
        self.shard_paths = [Path(f"{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}")
                            for shard in range(self.num_shards)]
        missing = [str(path) for path in self.shard_paths if not path.is_file()]
        if missing:
            raise TFCheckpointError(f"{self.index_path}: missing data shard(s) {missing}; the checkpoint is partial")
        shard_sizes = [path.stat().st_size for path in self.shard_paths]
        self.entries: dict[str, TensorEntry] = {}
        for key, value in entries[1:]:
            entry = self._entry(key, value)
            end = entry.offset + entry.size
            if entry.shard >= self.num_shards:
                raise TFCheckpointError(f"{self.index_path}: tensor {entry.name!r} is in shard {entry.shard} of "
                                        f"{self.num_shards} (corrupt)")
            if end > shard_sizes[entry.shard]:
                raise TFCheckpointError(
                    f"{self.shard_paths[entry.shard]}: tensor {entry.name!r} needs bytes [{entry.offset}, {end}) but "
                    f"the file has {shard_sizes[entry.shard]} (truncated)")
            self.entries[entry.name] = entry

    def _entry(self, key: bytes, value: bytes) -> TensorEntry:
        try:
            name = key.decode("utf-8")
        except UnicodeDecodeError:
            name = repr(key)
        where = f"{self.index_path} (entry {name!r})"
        if key[:1] == b"\x00":
            raise TFCheckpointError(f"{where}: a slice of a partitioned variable; this reader reads whole tensors only")
        fields = _protobuf_fields(value, where)
        if 7 in fields:
            raise TFCheckpointError(f"{where}: a partitioned variable stored as slices; this reader reads whole tensors only")
        dtype = _int(fields, 1)
        if dtype not in DTYPES and dtype not in (DT_STRING, DT_BFLOAT16):
            raise TFCheckpointError(f"{where}: dtype {DTYPE_NAMES.get(dtype, dtype)} has no NumPy equivalent here")
        shape_fields = _protobuf_fields(fields[2][-1], where) if 2 in fields else {}
        if _int(shape_fields, 3):
            raise TFCheckpointError(f"{where}: a tensor of unknown rank")
        shape = tuple(_int(_protobuf_fields(dim, where), 1) for dim in shape_fields.get(2, []))
        if any(size < 0 for size in shape):
            raise TFCheckpointError(f"{where}: shape {shape} has an unknown dimension")
        entry = TensorEntry(name=name, dtype=DTYPE_NAMES[dtype], shape=shape, shard=_int(fields, 3),
                            offset=_int(fields, 4), size=_int(fields, 5), crc32c=unmask_crc(_int(fields, 6)))
        if dtype in DTYPES or dtype == DT_BFLOAT16:
            itemsize = 2 if dtype == DT_BFLOAT16 else DTYPES[dtype].itemsize
            if entry.size != itemsize * math.prod(shape):
                raise TFCheckpointError(f"{where}: {entry.size} bytes for a {entry.dtype} tensor of shape {shape} (corrupt)")
        return entry

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self) -> list[str]:
        """Tensor names, sorted."""
        return list(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor name -> shape, without reading any tensor."""
        return {name: entry.shape for name, entry in self.entries.items()}

    def dtypes(self) -> dict[str, str]:
        """Tensor name -> TF dtype name (``"float32"``, ``"int64"``, ``"string"`` ...)."""
        return {name: entry.dtype for name, entry in self.entries.items()}

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a NumPy array, its checksum verified.

        bfloat16 comes back as float32 (exactly); strings as an object array of ``bytes``.
        """
        if name not in self.entries:
            raise KeyError(f"{self.index_path} holds no tensor {name!r}")
        entry = self.entries[name]
        path = self.shard_paths[entry.shard]
        with open(path, "rb") as file:
            file.seek(entry.offset)
            data = file.read(entry.size)
        if len(data) != entry.size:
            raise TFCheckpointError(f"{path}: tensor {name!r} ends past the file (truncated)")
        if entry.dtype == "string":
            return self._strings(data, entry, path)
        if crc32c(data) != entry.crc32c:
            raise TFCheckpointError(f"{path}: tensor {name!r} fails its CRC-32C check (corrupt)")
        if entry.dtype == "bfloat16":
            high = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            return high.view(np.float32).reshape(entry.shape)
        dtype = next(np_dtype for code, np_dtype in DTYPES.items() if DTYPE_NAMES[code] == entry.dtype)
        return np.frombuffer(data, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=True)

    def _strings(self, data: bytes, entry: TensorEntry, path: Path) -> np.ndarray:
        """A string tensor: varint lengths, a masked CRC-32C of them, then the strings' bytes.

        TF checksums each length as a 4-byte little-endian integer (not as the varint it stores), both in
        the lengths' own checksum and in the tensor's, which then covers the stored checksum and the bytes.
        """
        where = f"{path} (tensor {entry.name!r})"
        lengths = []
        position = 0
        for _ in range(math.prod(entry.shape)):
            length, position = _varint(data, position, where)
            lengths.append(length)
        if position + 4 > len(data):
            raise TFCheckpointError(f"{where}: the string lengths run past the tensor's {len(data)} bytes (corrupt)")
        checksummed_lengths = b"".join(struct.pack("<I", length & 0xFFFFFFFF) for length in lengths)
        (stored,) = struct.unpack_from("<I", data, position)
        lengths_crc = _crc32c_serial(checksummed_lengths)
        if unmask_crc(stored) != lengths_crc or _crc32c_serial(data[position:], lengths_crc) != entry.crc32c:
            raise TFCheckpointError(f"{where}: fails its CRC-32C check (corrupt)")
        position += 4
        strings = np.empty(len(lengths), dtype=object)
        for i, length in enumerate(lengths):
            strings[i] = data[position : position + length]
            position += length
        if position != len(data):
            raise TFCheckpointError(f"{where}: string lengths do not add up to the tensor's {len(data)} bytes (corrupt)")
        return strings.reshape(entry.shape)

    def read_all(self) -> dict[str, np.ndarray]:
        """Every tensor, by name."""
        return {name: self.read(name) for name in self.entries}


def read_tf_checkpoint(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every tensor of the TF V2 checkpoint at ``prefix`` (see :class:`TFCheckpoint`), checksums verified."""
    return TFCheckpoint(prefix).read_all()
