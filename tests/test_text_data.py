"""Text corpora (data/text.py), the grammar and its exact recognizer (data/grammar.py), and the
text metrics (eval/text_metrics.py)."""

import math

import pytest
import torch

from diffusionforge.data import grammar
from diffusionforge.data.text import pack, read_text, slice_documents, split_documents
from diffusionforge.errors import DataError
from diffusionforge.eval.text_metrics import grammar_lines, longest_copied_span, unigram_entropy


def test_undecodable_bytes_name_the_file_and_the_offset(tmp_path):
    (tmp_path / "a.txt").write_text("fine text\n", encoding="utf-8")
    (tmp_path / "b.txt").write_bytes("héllo ".encode() + b"\xff\xfe rest")
    with pytest.raises(DataError) as e:
        read_text(tmp_path)
    msg = str(e.value)
    assert "b.txt" in msg and "0xff" in msg and "byte offset 7" in msg and "\n" not in msg


def test_empty_corpus_is_refused(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n")
    with pytest.raises(DataError, match="empty corpus"):
        read_text(tmp_path)
    with pytest.raises(DataError, match="empty corpus"):
        read_text(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="no such file"):
        read_text(tmp_path / "missing.txt")


def test_folder_reading_skips_hidden_files_and_sorts(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "2.txt").write_text("two")
    (tmp_path / "1.txt").write_text("one")
    (tmp_path / ".hidden").write_bytes(b"\xff")  # would be undecodable if read
    assert read_text(tmp_path) == ["one", "two"]


def test_split_is_stable_disjoint_and_near_the_fraction():
    docs = [f"document number {i}" for i in range(4000)]
    train, held = split_documents(docs, 0.1)
    assert not set(train) & set(held) and len(train) + len(held) == len(docs)
    assert 0.08 < len(held) / len(docs) < 0.12
    train2, held2 = split_documents(list(reversed(docs)), 0.1)
    assert set(held2) == set(held)  # by content, not order
    one_train, one_held = split_documents(["a\n" * 50], 0.1)
    assert one_train[0] + one_held[0] == "a\n" * 50 and one_held[0]


def test_a_training_slice_is_stable_nested_and_leaves_the_held_out_part_alone(tmp_path):
    """data.text.subset: a fixed slice of the training documents (data-constrained runs)."""
    docs = [f"document number {i}" for i in range(4000)]
    part = slice_documents(docs, 0.1)
    assert 0.08 < len(part) / len(docs) < 0.12 and set(part) < set(docs)
    assert part == [d for d in docs if d in set(part)]  # original order
    assert set(slice_documents(list(reversed(docs)), 0.1)) == set(part)  # by content
    assert set(part) < set(slice_documents(docs, 0.3))  # a larger slice contains a smaller
    # not the held-out split's hash: the slice is spread over both parts about evenly
    _, held = split_documents(docs, 0.1)
    assert 0.05 < len(set(part) & set(held)) / len(held) < 0.15

    from diffusionforge.errors import ConfigError
    from diffusionforge.train.builders_text import load_corpus
    from diffusionforge.train.config import Config

    for i in range(300):  # a folder: one document per file
        (tmp_path / f"{i:03d}.txt").write_text(docs[i])
    cfg = Config()
    cfg.data.kind, cfg.data.path = "text", str(tmp_path)
    full = load_corpus(cfg)
    cfg.data.text.subset = 0.1
    small = load_corpus(cfg)
    assert small.heldout == full.heldout and small.train == slice_documents(full.train, 0.1)
    for bad in (0.0, 1.5):
        cfg.data.text.subset = bad
        with pytest.raises(ConfigError, match="data.text.subset: expected a fraction in"):
            load_corpus(cfg)


def test_pack_joins_with_the_separator_and_drops_the_tail():
    out = pack([[5, 6, 7], [8, 9]], 3, [0])
    assert torch.equal(out, torch.tensor([[5, 6, 7], [0, 8, 9]]))  # tail [0] dropped


def test_grammar_samples_parse_and_near_misses_do_not():
    sentences = grammar.sample_sentences(500, seed=3)
    assert all(grammar.parses(s) for s in sentences)
    assert any(" near " in s or " on " in s for s in sentences)  # PPs occur
    bad = [
        "the cat sleep.",  # agreement
        "the cat near the dogs sleep.",  # agreement across a PP
        "the cats near the dog sleeps.",
        "a cats sleep.",  # determiner number
        "the cat  sleeps.",  # double space
        "the cat sleeps",  # no period
        "the cat sleeps .",
        "cat sleeps.",
        "the cat sees.",  # transitive verb without object
        "the cat sleeps the dog.",
    ]
    assert not any(grammar.parses(s) for s in bad)
    good = ["the cat near the dogs sleeps.", "these old red cats chase a tree under the mat."]
    assert all(grammar.parses(s) for s in good)


def test_grammar_corpus_holds_out_unseen_sentences():
    train, held = grammar.corpus(2000, 100, seed=0)
    assert len(held) == 100 and not set(held) & set(train)
    assert max(len(s) for s in train + held) <= 60


def test_unigram_entropy_closed_form():
    assert unigram_entropy([3, 3, 3, 3]) == 0.0
    assert math.isclose(unigram_entropy([1, 2, 3, 4]), math.log(4))
    assert math.isclose(unigram_entropy([1, 1, 2, 2]), math.log(2))


def test_longest_copied_span():
    corpus = "the quick brown fox jumps"
    assert longest_copied_span("a brown fox!", corpus) == len(" brown fox")
    assert longest_copied_span("zzz", corpus) == 0
    assert longest_copied_span(corpus, corpus) == len(corpus)


def test_grammar_lines_judges_only_complete_sentences():
    text = "s sleeps.\nthe cat sleeps.\nthe cat sleep.\nthe do"
    assert grammar_lines(text) == (2, 1)
    assert grammar_lines("the dog runs.\nthe", first_is_whole=True) == (1, 1)
