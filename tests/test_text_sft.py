"""Conditional generation (#19): the SFT losses against hand computations, prompts kept by every
sampler, the JSONL pairs reader's one-line errors, the Sudoku generator and solver, and the AR
key/value cache against the uncached model."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
import torch

from diffusionforge.core.autoregressive import sample_autoregressive
from diffusionforge.core.discrete import LogLinear
from diffusionforge.core.discrete_samplers import TOKEN_SAMPLERS
from diffusionforge.core.sft import AutoregressiveSFT, MaskedSFT, response_mask
from diffusionforge.data import pairs, sudoku
from diffusionforge.errors import DataError
from diffusionforge.nets.kv_cache import KVCache
from diffusionforge.nets.transformer import TransformerLM

MASK = 1
# V = 5: pad 0, mask 1, tokens 2..4; weights (1, *, 1, 2, 1): SUBS drops the mask -> 1/5 2/5 1/5
LOGITS = torch.log(torch.tensor([1.0, 1.0, 1.0, 2.0, 1.0]))


def constant_net(tokens, t, cond):
    assert cond is None  # the prompt length is the objective's, never the network's
    return LOGITS.expand(*tokens.shape, 5).clone()


class FixedMasks(MaskedSFT):
    """t = 0.5 and positions 1 and 3 masked, whatever the generator."""

    def sample_noise_level(self, batch, *, device=None, generator=None):
        return torch.full((batch,), 0.5)

    def add_noise(self, tokens, t, generator=None):
        z = tokens.clone()
        z[:, [1, 3]] = MASK
        return z


def test_masked_sft_loss_equals_hand_computation():
    tokens = torch.tensor([[2, 3, 4, 3]])
    prompt_len = torch.tensor([2])  # positions 0, 1 prompt; 2, 3 response
    loss = FixedMasks(mask_id=MASK, schedule=LogLinear()).loss(constant_net, tokens, prompt_len)
    # position 1 is prompt: never masked, costs nothing; position 3 (token 3, p = 2/5) is masked;
    # weight 1 / t = 2, divided by the response length 2
    assert loss.item() == pytest.approx(2 * math.log(5 / 2) / 2, rel=1e-6)


def test_masked_sft_never_masks_the_prompt():
    seen = []

    def recorder(tokens, t, cond):
        seen.append(tokens.clone())
        return torch.zeros(*tokens.shape, 5)

    tokens = torch.randint(2, 5, (64, 10))
    prompt_len = torch.randint(1, 9, (64,))
    obj = MaskedSFT(mask_id=MASK)
    obj.loss(recorder, tokens, prompt_len, generator=torch.Generator().manual_seed(0))
    z = seen[0]
    prompt = ~response_mask(tokens, prompt_len)
    assert torch.equal(z[prompt], tokens[prompt])
    assert (z[~prompt] == MASK).any()  # the response is masked somewhere


def test_ar_sft_loss_equals_hand_computation():
    tokens = torch.tensor([[2, 3, 4, 3]])
    loss = AutoregressiveSFT(bos_id=MASK).loss(constant_net, tokens, torch.tensor([2]))
    # AR scores every id with softmax over all 5 (total weight 6): tokens 4 and 3 at positions
    # 2 and 3 have p = 1/6 and 2/6
    assert loss.item() == pytest.approx((math.log(6) + math.log(3)) / 2, rel=1e-6)


def test_sft_elbo_is_exact_for_a_context_free_model():
    # a denoiser that ignores its input, response tokens of p = 1/5 each: every masked response
    # token costs log 5, whatever the masks; the prompt's token 3 (p = 2/5) must not count
    tokens = torch.tensor([[3, 3, 4, 2, 4]])
    nll = MaskedSFT(mask_id=MASK).elbo_nll(constant_net, tokens, torch.tensor([2]), steps=8)
    assert nll.item() == pytest.approx(math.log(5), rel=1e-6)


@pytest.mark.parametrize("name", ["ancestral", "confidence", "margin"])
def test_prompt_tokens_never_change_in_sampling(name):
    torch.manual_seed(0)
    net = TransformerLM(6, 12, dim=16, depth=1, heads=2).eval()
    obj = MaskedSFT(mask_id=MASK)
    x = torch.full((4, 12), MASK)
    x[:, :5] = torch.randint(2, 6, (4, 5))
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    with torch.no_grad():
        y = TOKEN_SAMPLERS[name](obj.precondition(net), x, 7, mask_id=MASK, generator=gens)
    assert torch.equal(y[:, :5], x[:, :5])
    assert not (y == MASK).any()


def test_kv_cache_matches_the_uncached_model():
    torch.manual_seed(0)
    net = TransformerLM(7, 16, dim=16, depth=2, heads=2, causal=True).eval()
    tokens = torch.randint(0, 7, (3, 16))
    with torch.no_grad():
        full = net(tokens)
        cache = KVCache(net)
        parts = [cache.step(tokens[:, :5])] + [
            cache.step(tokens[:, i : i + 1]) for i in range(5, 16)
        ]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_kv_cache_sampling_equals_uncached_sampling():
    torch.manual_seed(1)
    net = TransformerLM(7, 16, dim=16, depth=2, heads=2, causal=True).eval()
    x = torch.full((3, 16), MASK)
    x[:, :4] = torch.randint(2, 7, (3, 4))

    def run(kv):
        gens = [torch.Generator().manual_seed(i) for i in range(3)]
        with torch.no_grad():
            return sample_autoregressive(
                net, x, bos_id=MASK, mask_id=MASK, generator=gens, kv_cache=kv
            )

    plain, cached = run(None), run(lambda: KVCache(net))
    assert torch.equal(plain, cached)
    assert torch.equal(cached[:, :4], x[:, :4]) and not (cached == MASK).any()


# --- JSONL pairs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, why",
    [
        ('{"prompt": "a", "response": "b"', "not JSON"),
        ('["a", "b"]', "expected an object"),
        ('{"prompt": "a"}', "field 'response' must be a string (missing)"),
        ('{"prompt": 3, "response": "b"}', "field 'prompt' must be a string (int)"),
        ('{"prompt": "a\\u001e", "response": "b"}', "separator"),
    ],
)
def test_bad_jsonl_line_is_one_line_error_with_its_number(tmp_path, line, why):
    f = tmp_path / "pairs.jsonl"
    f.write_text('{"prompt": "q", "response": "r"}\n\n' + line + "\n")
    with pytest.raises(DataError) as e:
        pairs.read_pairs(f)
    msg = str(e.value)
    assert msg.startswith(f"{f}:3: ") and why in msg and "\n" not in msg


def test_undecodable_jsonl_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_bytes(b'{"prompt": "q", "response": "r"}\n{"prompt": "\xff"}\n')
    with pytest.raises(DataError, match=r"pairs.jsonl:2: not UTF-8 \(byte 0xff\)"):
        pairs.read_pairs(f)


def test_pairs_windows_and_prompt_lengths():
    from diffusionforge.data.tokenizers import CharTokenizer

    tok = CharTokenizer.from_text("abc" + pairs.SEP)
    data, plen = pairs.pack_pairs(tok, [("ab", "c"), ("a", "bca")], 6)
    sep, a, b, c = (tok.encode(ch)[0] for ch in pairs.SEP + "abc")
    assert data.tolist() == [[a, b, sep, c, 0, 0], [a, sep, b, c, a, 0]]
    assert plen.tolist() == [3, 2]
    assert pairs.response_text(tok, [b, c, 0, a]) == "bc"  # cut at the first EOS
    with pytest.raises(DataError, match="pair 1: 7 tokens"):
        pairs.pack_pairs(tok, [("abc", "abc")], 6)


def test_train_on_bad_pairs_file_is_one_line_and_exit_2(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "q", "response": "r"}\n{"prompt": "q" "response": "r"}\n')
    r = subprocess.run(
        [sys.executable, "-m", "diffusionforge", "train", "--preset", "sudoku", "--set",
         "data.kind=pairs", "--set", f"data.path={f}", "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {f}:2: not JSON (Expecting ',' delimiter "
                                             "at column 16)"]  # fmt: skip


# --- Sudoku -------------------------------------------------------------------------------------

CLASSIC = "53..7....6..195....98....6.8...6...34..8.3..17...2...6.6....28....419..5....8..79"
CLASSIC_SOLUTION = (
    "534678912672195348198342567859761423426853791713924856961537284287419635345286179"
)


def test_solver_on_a_known_puzzle():
    assert sudoku.solve(CLASSIC, limit=5) == [CLASSIC_SOLUTION]
    assert sudoku.is_solution(CLASSIC, CLASSIC_SOLUTION)
    assert not sudoku.is_solution(CLASSIC, CLASSIC_SOLUTION[:-2] + "97")  # a column repeats
    assert sudoku.count_solutions("." * 81) == 2  # stops at the limit
    assert sudoku.solve("11" + "." * 79) == []  # clashing givens


def test_generated_puzzles_have_unique_solutions():
    pairs_ = sudoku.puzzles(6, 3, seed=0, min_givens=25, max_givens=30)
    assert len(pairs_) == 18
    for puzzle, solution in pairs_:
        assert sudoku.solve(puzzle, limit=2) == [solution]  # unique, and it is the solution
        assert sudoku.is_solution(puzzle, solution)
        assert 25 <= sudoku.givens(puzzle) <= 40
    held = sudoku.puzzles(6, 1, seed=0, min_givens=25, max_givens=30, heldout=True)
    assert not {p for p, _ in held} & {p for p, _ in pairs_}


def test_transform_keeps_solutions_and_uniqueness():
    a, b = sudoku.transform(random.Random(3), CLASSIC, CLASSIC_SOLUTION)
    assert a != CLASSIC and sudoku.givens(a) == sudoku.givens(CLASSIC)
    assert sudoku.solve(a, limit=2) == [b]


def test_parse_grid_accepts_typed_forms():
    typed = " ".join(CLASSIC[r * 9 : r * 9 + 9].replace(".", "0") for r in range(9))
    assert sudoku.parse_grid(typed) == CLASSIC
    assert sudoku.parse_grid("|".join(CLASSIC).replace(".", "_")) == CLASSIC
    with pytest.raises(ValueError, match="81 cells, got 80"):
        sudoku.parse_grid(CLASSIC[:-1])


def test_pairs_model_answers_a_prompt(tmp_path):
    """Train a tiny pairs model 2 steps, then generate-text --prompt gives a response line."""
    f = tmp_path / "p.jsonl"
    f.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "response": f"a{i}"}) + "\n" for i in range(8))
    )
    run = tmp_path / "run"
    base = [sys.executable, "-m", "diffusionforge"]
    r = subprocess.run(
        base + ["train", "--preset", "sudoku", "--set", "data.kind=pairs", "--set",
                f"data.path={f}", "--set", "data.text.length=8", "--set", "data.text.heldout=0",
                "--set", "model.transformer.preset=tiny", "--steps", "2", "--set",
                "train.batch_size=4", "--set", "model.transformer.positions=rope",
                "--run-dir", str(run), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        base + ["generate-text", str(run), "--prompt", "q3"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = r.stdout.rstrip("\n")
    assert "\n" not in out and set(out) <= set("qa0123456789")


@pytest.fixture(scope="module")
def sudoku_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("sudoku")
    r = subprocess.run(
        [sys.executable, "-m", "diffusionforge", "train", "--preset", "sudoku", "--set",
         "data.sudoku.bases=4", "--set", "data.sudoku.variants=2", "--set",
         "model.transformer.preset=tiny", "--set", "train.batch_size=4", "--steps", "1",
         "--run-dir", str(root / "run"), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    models = root / "models"
    models.mkdir()
    (models / "sudoku-tiny").symlink_to(root / "run", target_is_directory=True)
    return models, root / "run"


def test_server_answers_a_sudoku_prompt_as_the_pipeline_does(sudoku_model):
    import httpx
    from serverkit import running_server, settings

    from diffusionforge.pipelines.text import load_text_pipeline
    from diffusionforge.pipelines.text_pairs import answer

    models, run = sudoku_model
    with running_server(settings(models)) as (url, _):
        client = httpx.Client(base_url=url, timeout=60)
        (model,) = client.get("/api/models").json()["models"]
        assert model["conditional"] is True and "81 cells" in model["prompt_hint"]
        req = {"model": "sudoku-tiny", "prompt": CLASSIC, "nfe": 9, "seed": 2, "n": 2, "draws": 3}
        job = client.post("/api/generate/text?wait=true", json=req).json()
        assert job["status"] == "done", job
        assert job["progress"]["done"] == job["progress"]["total"] == 9
        meta = job["outputs"][0]["metadata"]
        assert meta["sampler"] == "margin" and meta["draws"] == 3  # a Sudoku model's default
        texts = [client.get(o["url"]).text for o in job["outputs"] if o["role"] == "text"]
        r = client.post("/api/generate/text", json={**req, "prompt": CLASSIC[:-1]})
        assert r.status_code == 422 and "prompt: a Sudoku grid has 81 cells" in r.json()["error"]
    torch.set_num_threads(1)
    pipe = load_text_pipeline(run)
    assert texts == [answer(pipe, [CLASSIC], nfe=9, seed=2 + i, draws=3)[0] for i in range(2)]


def test_generate_text_verifies_a_sudoku_answer_and_records_it(sudoku_model, tmp_path, capsys):
    from trainkit import cli

    _, run = sudoku_model
    out = tmp_path / "answers"
    code, _, err = cli(capsys, "generate-text", run, "--prompt", CLASSIC, "--draws", "2",
                       "--out", out)  # fmt: skip
    assert code == 0, err
    meta = json.loads((out / "samples.json").read_text())
    assert meta["sampler"] == "margin" and meta["draws"] == 2 and meta["accept"] == 0.9
    for flags, why in ((["--draws", "0"], "--draws: expected a positive number"),
                       (["--accept", "1.5"], "--accept: expected a probability")):  # fmt: skip
        code, _, err = cli(capsys, "generate-text", run, "--prompt", CLASSIC, *flags)
        assert code == 2 and why in err, err
