"""Recovery codes (lib/crypto/recovery_codes.py): ten distinct 50-bit codes, read back however they
are typed, stored as a user-bound HMAC under their own purpose key."""

from __future__ import annotations

import math
import re
import uuid

import pytest

from auth_service.lib.crypto import recovery_codes as rc
from auth_service.lib.crypto.derive import PURPOSES, PurposeKeys

KEYS = PurposeKeys(b"m" * 32, b"s" * 32)
KEY = KEYS.key("recovery-code")
USER = uuid.uuid4()


def test_ten_distinct_codes_of_at_least_50_bits_each_without_ambiguous_characters() -> None:
    codes = rc.generate_codes()
    assert len(codes) == 10 == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{2}", code), code
    assert rc.CODE_LENGTH * math.log2(len(set(rc.ALPHABET))) >= 50
    assert not set("ilou") & set(rc.ALPHABET)


@pytest.mark.parametrize(
    "typed",
    ["abcd-efgh-jk", "ABCD-EFGH-JK", " abcd efgh jk ", "abcdefghjk", "ab-cd-ef-gh-jk", "abcd\tefgh-jk"],
)
def test_case_spaces_and_dashes_do_not_matter(typed: str) -> None:
    assert rc.normalize_code(typed) == "abcdefghjk"
    assert rc.hash_code(KEY, typed, USER) == rc.hash_code(KEY, "abcd-efgh-jk", USER)


def test_letters_read_as_digits_match_the_digits() -> None:
    assert rc.normalize_code("OIL0-1234-56") == "0110123456"


@pytest.mark.parametrize(
    "typed", ["", "abcd-efgh-j", "abcd-efgh-jkm", "abcd-efgh-ju", "abcd-efgh-j!", "é" * 10, "a" * 10**6]
)
def test_what_cannot_be_a_code_is_refused_without_a_lookup(typed: str) -> None:
    assert rc.normalize_code(typed) is None
    assert rc.lookup_hash(KEY, typed, USER) is None
    with pytest.raises(ValueError, match="not a recovery code"):
        rc.hash_code(KEY, typed, USER)


def test_the_stored_hash_is_64_hex_characters_bound_to_the_key_and_the_user() -> None:
    code = rc.generate_codes(1)[0]
    stored = rc.hash_code(KEY, code, USER)
    assert re.fullmatch(r"[0-9a-f]{64}", stored)
    assert code.replace("-", "") not in stored
    assert rc.hash_code(KEY, code, uuid.uuid4()) != stored
    assert rc.hash_code(KEYS.key("totp"), code, USER) != stored


def test_the_recovery_code_purpose_has_a_key_of_its_own() -> None:
    assert "recovery-code" in PURPOSES
    assert KEY not in {KEYS.key(purpose) for purpose in PURPOSES if purpose != "recovery-code"}


def test_a_typed_code_finds_its_own_hash_among_the_unused_ones_and_nothing_else() -> None:
    codes = rc.generate_codes()
    unused = [rc.hash_code(KEY, code, USER) for code in codes]
    assert rc.matching_hash(KEY, codes[3].upper(), USER, unused) == unused[3]
    assert rc.matching_hash(KEY, codes[3], USER, unused[:3] + unused[4:]) is None  # used already
    assert rc.matching_hash(KEY, codes[3], uuid.uuid4(), unused) is None
    assert rc.matching_hash(KEY, "not a code", USER, unused) is None
    assert rc.lookup_hash(KEY, codes[0], USER) == unused[0]
