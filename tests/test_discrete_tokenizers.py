"""Tokenizers for text diffusion (data/tokenizers.py): exact round trips, one-line errors,
deterministic BPE training, and JSON-only save/load inside a folder."""

import json

import pytest

from diffusionforge.data.tokenizers import (
    TOKENIZERS,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
    save_tokenizer,
)
from diffusionforge.errors import CheckpointError, DataError

CORPUS = (
    "The cat sat on the mat.\nThe dog sat on the log.\n"
    "A cat and a dog met at the mat; the dog ate the cat's hat!\n"
) * 4 + "Ünïcödé, tabs\tand emoji 🐈 too.\n"
TEXTS = ["", "the cat", "  leading and trailing  ", "Ünïcödé 🐈\n\ttab", CORPUS, "zzz qqq ¿?"]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return BPETokenizer.train(CORPUS, vocab_size=300)


def test_char_round_trip_and_reserved_ids():
    tok = CharTokenizer.from_text(CORPUS)
    assert (tok.pad_id, tok.mask_id) == (0, 1) and tok.chars == sorted(set(CORPUS))
    assert tok.vocab_size == len(set(CORPUS)) + 2
    ids = tok.encode(CORPUS)
    assert min(ids) >= 2 and tok.decode(ids) == CORPUS
    assert tok.decode([0, *tok.encode("cat"), 1, 1, 0], mask="_") == "cat__"


def test_char_unknown_character_is_one_line_naming_it_and_its_position():
    tok = CharTokenizer.from_text("abc\n")
    with pytest.raises(DataError) as e:
        tok.encode("abc\nab€c")
    msg = str(e.value)
    assert "'€'" in msg and "U+20AC" in msg and "position 6" in msg and "\n" not in msg
    with pytest.raises(DataError, match=r"'\\t' \(U\+0009\) at position 1"):
        tok.encode("a\tb")  # a control character is shown escaped: the message stays one line


def test_empty_corpus_is_refused():
    with pytest.raises(DataError, match="empty corpus"):
        CharTokenizer.from_text("")
    with pytest.raises(DataError, match="empty corpus"):
        BPETokenizer.train([], vocab_size=300)


@pytest.mark.parametrize("text", TEXTS)
def test_bpe_round_trips_any_text_byte_for_byte(bpe, text):
    # byte-level: text it never saw (z, q, ¿) is still encodable, and decodes back exactly
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_learns_merges_and_reserves_pad_and_mask(bpe):
    assert (bpe.pad_id, bpe.mask_id) == (0, 1)
    assert 258 < bpe.vocab_size <= 300  # 2 specials + 256 bytes + merges
    assert len(bpe.encode(CORPUS)) < len(CORPUS.encode()) / 2  # merges compress the corpus
    ids = bpe.encode("the cat sat")
    assert bpe.decode([0, *ids[:1], 1, *ids[1:], 0], mask="[_]").count("[_]") == 1


def test_bpe_training_is_deterministic(bpe):
    again = BPETokenizer.train(CORPUS, vocab_size=300)
    assert again.tokenizer.to_str() == bpe.tokenizer.to_str()
    assert again.encode(CORPUS) == bpe.encode(CORPUS)


@pytest.mark.parametrize("kind", sorted(TOKENIZERS))
def test_save_load_round_trip_is_plain_json_in_the_folder(tmp_path, bpe, kind):
    tok = bpe if kind == "bpe" else CharTokenizer.from_text(CORPUS)
    path = save_tokenizer(tok, tmp_path / "ckpt")
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["tokenizer.json"]
    assert json.loads(path.read_text(encoding="utf-8"))["kind"] == kind
    loaded = load_tokenizer(tmp_path / "ckpt")
    assert type(loaded) is type(tok) and loaded.vocab_size == tok.vocab_size
    assert loaded.encode(CORPUS) == tok.encode(CORPUS)
    assert loaded.decode(loaded.encode(CORPUS)) == CORPUS


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not a readable JSON tokenizer"),
        ('{"kind": "wordpiece"}', "unknown tokenizer kind 'wordpiece'"),
        ('{"kind": "char", "chars": ["ab"]}', "malformed char tokenizer"),
        ('{"kind": "bpe", "tokenizer": {"model": 3}}', "malformed bpe tokenizer"),
    ],
)
def test_bad_tokenizer_files_give_one_line_errors(tmp_path, content, expected):
    if content is not None:
        (tmp_path / "tokenizer.json").write_text(content, encoding="utf-8")
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(tmp_path)
    msg = str(e.value)
    assert expected in msg and "tokenizer.json" in msg and "\n" not in msg
