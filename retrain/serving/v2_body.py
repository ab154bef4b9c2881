"""The envelope of a V2 REST inference request, checked before KServe parses it.

KServe answers a malformed body with a 500 and a traceback (a lying ``binary_data_size``, a bad
``inference-header-content-length``, a shape of ``1e400``) or with a message that names nothing
("There was an error parsing the body"). :func:`check_infer_body` reads the same bytes first and
raises :class:`~retrain.errors.InputError` naming the header, input or field at fault. It checks
the framing only: which inputs the model wants, and their rows, are the model's to check.

Binary tensors (the protocol's binary data extension): the JSON part is the first
``inference-header-content-length`` bytes; each input without ``data`` has
``parameters.binary_data_size`` bytes after it, in input order, which must add up to the rest of
the body. A BYTES element is a 4-byte little-endian length, then that many bytes of UTF-8.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any

from retrain.errors import InputError
from retrain.serving.protocol import is_unicode

JSON_LENGTH_HEADER = "inference-header-content-length"


def check_infer_body(body: bytes, headers: Mapping[str, str]) -> None:
    """Raise :class:`InputError` if KServe could not read ``body`` as an inference request.

    :param headers: the request's headers, names in lower case (as ASGI gives them).
    """
    length = headers.get(JSON_LENGTH_HEADER)
    if length is None:
        content_type = headers.get("content-type", "")
        if not _is_json(content_type):
            raise InputError(
                f"the body is sent as {content_type or 'no Content-Type'}: send JSON with Content-Type "
                f"application/json, or binary tensors with the {JSON_LENGTH_HEADER} header"
            )
        json_part, binary = body, b""
    else:
        json_length = _json_length(length, len(body))
        json_part, binary = body[:json_length], body[json_length:]
    request = parse_json(json_part, "the inference request")
    if not isinstance(request, dict):
        raise InputError(f"the inference request must be a JSON object, got a JSON {_kind(request)}")
    if not isinstance(request.get("id", ""), str) or not is_unicode(request.get("id", "")):
        raise InputError("the request's id must be a string of valid Unicode")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise InputError('the inference request needs "inputs": a list of objects')
    if not isinstance(request.get("parameters") or {}, dict):
        raise InputError('the request\'s "parameters" must be an object')
    _check_outputs(request.get("outputs"))
    offset = 0
    for position, tensor in enumerate(inputs):
        offset += _check_input(position, tensor, binary, offset)
    if offset != len(binary):
        raise InputError(
            f"{len(binary)} bytes of binary data follow the JSON, but the inputs' binary_data_size "
            f"add up to {offset}"
        )


def parse_json(raw: bytes, what: str) -> Any:
    """``raw`` parsed as JSON, or :class:`InputError` saying why not (encoding, syntax, nesting, size)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InputError(f"{what} is not UTF-8 (byte {error.start}: {error.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{what} is not valid JSON: {error.msg} at character {error.pos}") from None
    except RecursionError:
        raise InputError(f"{what} is JSON nested too deeply") from None
    except ValueError as error:  # an integer of more than 4300 digits
        raise InputError(f"{what} holds a number JSON parsing refuses ({error})") from None


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _json_length(value: str, body_length: int) -> int:
    if not value.strip().isdigit():
        raise InputError(f"header {JSON_LENGTH_HEADER} must be a whole number of bytes, got {value!r}")
    length = int(value)
    if not 0 < length <= body_length:
        raise InputError(
            f"header {JSON_LENGTH_HEADER} is {length}, but the body has {body_length} bytes: "
            "it must be the length of the JSON part, which comes first"
        )
    return length


def _check_outputs(outputs: Any) -> None:
    """The optional ``outputs`` the client asks for: objects with a string name (KServe's binary path
    reads them unchecked, and answered a 500)."""
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise InputError(f'"outputs" must be a list of objects with a name, got {_short(outputs)}')
    for position, output in enumerate(outputs):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InputError(f"outputs[{position}] needs a string name, got {_short(output)}")
        if not isinstance(output.get("parameters") or {}, dict):
            raise InputError(f"outputs[{position}]: parameters must be an object")


def _check_input(position: int, tensor: dict[str, Any], binary: bytes, offset: int) -> int:
    """Check input ``position``; return how many bytes of ``binary`` (from ``offset``) it takes."""
    name = tensor.get("name")
    if not isinstance(name, str):
        raise InputError(f"inputs[{position}] needs a string name")
    where = f"input {name!r}"
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(_is_whole(d) for d in shape):
        raise InputError(f"{where}: shape must be a list of whole numbers of 0 or more, got {_short(shape)}")
    if not isinstance(tensor.get("datatype"), str):
        raise InputError(f"{where} needs a string datatype")
    parameters = tensor.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InputError(f"{where}: parameters must be an object")
    if tensor.get("data") is not None:
        return 0
    if "binary_data_size" not in parameters:
        raise InputError(f"{where} has neither data nor parameters.binary_data_size")
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or not _is_whole(size):
        raise InputError(f"{where}: binary_data_size must be a whole number of bytes, got {_short(size)}")
    chunk = binary[offset : offset + size]
    if len(chunk) < size:
        raise InputError(
            f"{where}: binary_data_size is {size}, but only {len(chunk)} bytes of binary data are left for it"
        )
    if tensor["datatype"] != "BYTES":
        raise InputError(f"{where}: binary data is read here as BYTES only, not {tensor['datatype']}")
    _check_bytes_elements(where, chunk, math.prod(shape))
    return size


def _check_bytes_elements(where: str, chunk: bytes, count: int) -> None:
    """``chunk`` must hold exactly ``count`` length-prefixed UTF-8 elements."""
    position, found = 0, 0
    while position < len(chunk):
        if len(chunk) - position < 4:
            raise InputError(
                f"{where}: element {found} has a cut length prefix ({len(chunk) - position} of 4 bytes)"
            )
        (length,) = struct.unpack_from("<I", chunk, position)
        position += 4
        if length > len(chunk) - position:
            raise InputError(
                f"{where}: element {found} says {length} bytes, but {len(chunk) - position} are left"
            )
        try:
            chunk[position : position + length].decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(f"{where}: element {found} is not UTF-8 ({error.reason})") from None
        position += length
        found += 1
    if found != count:
        raise InputError(f"{where}: its shape holds {count} elements, its binary data {found}")


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _kind(value: object) -> str:
    return {str: "string", list: "array", bool: "boolean", type(None): "null"}.get(type(value), "number")


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
