"""The V2 REST envelope check: every malformed body KServe answered with a 500 or a vague message.

Fast, without a server: the same bodies also go through the live server in test_v2_rest.py.
"""

from __future__ import annotations

import json
import re
import struct
from typing import Any

import pytest

from retrain.errors import InputError
from retrain.serving.v2_body import JSON_LENGTH_HEADER, check_infer_body

from .v2 import binary_body, elements

JSON = {"content-type": "application/json"}


def json_input(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [1], "data": ["x"], **fields}


def test_well_formed_bodies_pass() -> None:
    check_infer_body(json.dumps({"inputs": [json_input("text"), json_input("customer_id")]}).encode(), JSON)
    check_infer_body(*binary_body(elements(b"a text"), elements(b"acme_air")))
    check_infer_body(*binary_body(elements(b"two", b"texts"), elements(b"a", b"b"), shapes=(2, 2)))


TEXT, CUSTOMER = elements(b"hello"), elements(b"acme_air")


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (*binary_body(TEXT, CUSTOMER, sizes=(3, len(CUSTOMER))), r"input 'text': element 0 has a cut length"),
        (
            *binary_body(TEXT, CUSTOMER, sizes=(50, len(CUSTOMER))),
            r"binary_data_size is 50, but only 21 bytes",
        ),
        (*binary_body(TEXT, CUSTOMER, sizes=(-1, len(CUSTOMER))), r"binary_data_size must be a whole number"),
        (
            binary_body(TEXT, CUSTOMER)[0],
            {JSON_LENGTH_HEADER: "abc"},
            r"must be a whole number of bytes, got 'abc'",
        ),
        (
            binary_body(TEXT, CUSTOMER)[0],
            {JSON_LENGTH_HEADER: "99999"},
            r"is 99999, but the body has \d+ bytes",
        ),
        (*binary_body(struct.pack("<I", 50) + b"abc", CUSTOMER), r"element 0 says 50 bytes, but 3 are left"),
        (*binary_body(elements(b"\xff\xfe"), CUSTOMER), r"input 'text': element 0 is not UTF-8"),
        (*binary_body(TEXT, elements(b"\xffx")), r"input 'customer_id': element 0 is not UTF-8"),
        (*binary_body(b"\x05\x00", CUSTOMER), r"element 0 has a cut length prefix \(2 of 4 bytes\)"),
        (*binary_body(TEXT, CUSTOMER, shapes=(2, 1)), r"its shape holds 2 elements, its binary data 1"),
        (
            *binary_body(TEXT, CUSTOMER, sizes=(len(TEXT), 100)),
            r"'customer_id': binary_data_size is 100, but only 12",
        ),
        (
            binary_body(TEXT, CUSTOMER)[0] + b"xx",
            binary_body(TEXT, CUSTOMER)[1],
            r"23 bytes of binary data follow the JSON, but the inputs' binary_data_size add up to 21",
        ),
    ],
    ids=[
        "size-too-small",
        "size-too-large",
        "size-negative",
        "header-not-a-number",
        "header-past-the-body",
        "lying-length-prefix",
        "text-not-utf8",
        "customer-not-utf8",
        "two-byte-payload",
        "shape-2-holding-1",
        "last-size-oversized",
        "bytes-left-over",
    ],
)
def test_binary_bodies_name_the_problem(body: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_infer_body(body, headers)


def _json(inputs: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": inputs}).encode()


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (
            b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1e400], "data": ["a"]}]}',
            JSON,
            r"shape must be a list of whole numbers of 0 or more, got \[Infinity\]",
        ),
        (
            b'{"inputs": [{"name": "text", "datatype": "BYTES", "shape": [NaN], "data": ["a"]}]}',
            JSON,
            r"got \[NaN\]",
        ),
        (
            _json([json_input("text", shape=[-5])]),
            JSON,
            r"input 'text': shape must be a list of whole numbers",
        ),
        (b'{"inputs": [{"shape": [' + b"9" * 5000 + b"]}]}", JSON, r"holds a number JSON parsing refuses"),
        (b"[" * 100_000, JSON, r"nested too deeply"),
        (b'"a string"', JSON, r"must be a JSON object, got a JSON string"),
        (
            b"{}",
            {"content-type": "text/plain"},
            r"sent as text/plain: send JSON with Content-Type application/json",
        ),
        (b'{"inputs": [}', JSON, r"not valid JSON: Expecting value at character 12"),
        (b'{"inputs": "\xff"}', JSON, r"not UTF-8 \(byte 12"),
        (b'{"id": "\\ud800", "inputs": []}', JSON, r"id must be a string of valid Unicode"),
        (_json([{"name": "text", "datatype": "BYTES", "shape": [1]}]), JSON, r"neither data nor parameters"),
        (
            json.dumps({"inputs": [json_input("text")], "outputs": "all"}).encode(),
            JSON,
            r'"outputs" must be a list of objects with a name, got "all"',
        ),
        (
            json.dumps({"inputs": [], "outputs": [{}]}).encode(),
            JSON,
            r"outputs\[0\] needs a string name, got \{\}",
        ),
        (
            json.dumps({"inputs": [], "outputs": [{"name": "label", "parameters": [1]}]}).encode(),
            JSON,
            r"outputs\[0\]: parameters must be an object",
        ),
        (json.dumps({"inputs": [], "parameters": [1]}).encode(), JSON, r'"parameters" must be an object'),
    ],
    ids=[
        "shape-1e400",
        "shape-nan",
        "shape-negative",
        "shape-5000-digits",
        "nested-100k-deep",
        "json-string",
        "json-as-text-plain",
        "json-syntax",
        "not-utf8",
        "lone-surrogate-id",
        "no-data",
        "outputs-not-a-list",
        "output-without-name",
        "output-parameters-not-an-object",
        "parameters-not-an-object",
    ],
)
def test_json_bodies_name_the_problem(body: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        check_infer_body(body, headers)
    assert "\n" not in str(raised.value)
    assert re.search(message, str(raised.value))
