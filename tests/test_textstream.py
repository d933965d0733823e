"""Token bytes → shown text: UTF-8 split across tokens, and stop strings held back and cut."""

from __future__ import annotations

from tokrace.backends.textstream import TextAssembler


def test_multibyte_character_split_over_tokens_is_held_until_complete() -> None:
    a = TextAssembler()
    euro = "€".encode()  # 3 bytes
    assert a.push(b"price: ") == "price: "
    assert a.push(euro[:1]) == ""
    assert a.push(euro[1:2]) == ""
    assert a.push(euro[2:]) == "€"
    assert a.text == "price: €"


def test_stop_string_is_cut_and_never_shown() -> None:
    a = TextAssembler(["<|im_end|>"])
    out = [a.push(p) for p in (b"Hello", b" <|im", b"_end", b"|> more")]
    assert "".join(out) == "Hello "
    assert a.stopped_by == "<|im_end|>"
    assert a.text == "Hello "
    assert a.push(b"after") == ""


def test_false_start_of_stop_string_is_released_later() -> None:
    a = TextAssembler(["\nUser:"])
    assert a.push(b"line one\nUs") == "line one"
    assert a.push(b"ually fine") == "\nUsually fine"
    assert a.stopped_by is None


def test_finish_releases_held_tail_and_replaces_broken_utf8() -> None:
    a = TextAssembler(["STOP"])
    assert a.push(b"end ST") == "end "
    assert a.finish() == "ST"
    b = TextAssembler()
    b.push(b"x\xe2\x82")
    assert b.finish() == "\ufffd"
    assert b.text == "x\ufffd"
