"""Byte-for-byte behaviour check between two trees of diffusionforge (a refactor's safety net).

Runs the same CLI commands, server requests, demo sections and training previews, with fixed
seeds and explicit settings, once with PYTHONPATH=<base tree> and once with PYTHONPATH=<tree>,
then compares every file written (PNG, .npy, WAV, JSON, text) byte for byte.

    git worktree add /tmp/base <commit>
    .venv/bin/python benchmarks/same_bytes.py --base /tmp/base --tree . --out /tmp/same-bytes

Each case runs with explicit --sampler/--schedule where a default could move, plus a few runs
with the defaults (a default another change moves shows up there, and only there). Prints one
line per case and exits 1 if any file differs. `--only NAME` runs a subset; `--quick` skips
the demo and training cases.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

PY = sys.executable
EXPLICIT = ["--sampler", "heun", "--schedule", "karras"]
TRAIN_COMMON = [
    "--no-progress",
    "--set",
    "train.tensorboard=false",
    "--set",
    "train.threads=1",
]

# name -> list of argv lists (run in order, in the case folder as the working directory).
CASES: dict[str, list[list[str]]] = {
    "sample-digits": [
        ["sample", "digits", "--n", "20", "--nfe", "6", *EXPLICIT, "--seed", "3", "--out", "a.png"],
        [
            "sample",
            "digits",
            "--class",
            "1,2",
            "--n",
            "4",
            "--nfe",
            "4",
            "--sampler",
            "euler",
            "--schedule",
            "karras",
            "--out",
            "b.npy",
        ],
        [
            "sample",
            "digits",
            "--class",
            "7",
            "--guidance",
            "2.5",
            "--n",
            "2",
            "--nfe",
            "8",
            "--sampler",
            "unipc",
            "--schedule",
            "optimized",
            "--out",
            "c.png",
        ],
        ["sample", "digits", "--class", "0", "--n", "4", "--nfe", "5", "--out", "default.png"],
    ],
    "sample-digits-like": [
        [
            "sample",
            "digits",
            "--class",
            "0",
            "--n",
            "2",
            "--nfe",
            "6",
            *EXPLICIT,
            "--seed",
            "5",
            "--out",
            "a.png",
        ],
        ["sample", "--like", "a/00001-class0-seed6.png", "digits", "--out", "like.png"],
    ],
    "edit-digits": [
        [
            "sample",
            "digits",
            "--init-image",
            "{init1}",
            "--strength",
            "0.5",
            "--nfe",
            "6",
            *EXPLICIT,
            "--n",
            "2",
            "--class",
            "3",
            "--out",
            "img2img.png",
        ],
        [
            "sample",
            "digits",
            "--init-image",
            "{init1}",
            "--mask",
            "{mask}",
            "--nfe",
            "6",
            *EXPLICIT,
            "--n",
            "2",
            "--class",
            "3",
            "--resample",
            "1",
            "--out",
            "inpaint.png",
        ],
        [
            "sample",
            "digits",
            "--init-image",
            "{init1}",
            "--mask",
            "{mask}",
            "--nfe",
            "5",
            "--n",
            "2",
            "--class",
            "3",
            "--out",
            "inpaint-default.png",
        ],
    ],
    "t2i": [
        [
            "generate",
            "a red circle left of a blue square",
            "--n",
            "2",
            "--nfe",
            "4",
            *EXPLICIT,
            "--seed",
            "1",
            "--guidance",
            "3",
            "--negative",
            "green",
            "--out",
            "g",
        ],
        [
            "generate",
            "two green squares",
            "--n",
            "1",
            "--nfe",
            "4",
            *EXPLICIT,
            "--init-image",
            "{init3}",
            "--strength",
            "0.7",
            "--out",
            "edit",
        ],
        [
            "generate",
            "a yellow triangle",
            "--n",
            "1",
            "--nfe",
            "4",
            *EXPLICIT,
            "--init-image",
            "{init3}",
            "--mask",
            "{mask32}",
            "--out",
            "inpaint",
        ],
        ["generate", "a red circle", "--n", "1", "--nfe", "5", "--out", "default"],
    ],
    "audio": [
        [
            "generate-audio",
            "audio-digits",
            "--class",
            "3,7",
            "--n",
            "1",
            "--nfe",
            "4",
            *EXPLICIT,
            "--seed",
            "2",
            "--out",
            "a",
        ],
        [
            "generate-audio",
            "audio-digits",
            "--class",
            "1",
            "--n",
            "1",
            "--nfe",
            "5",
            "--out",
            "default",
        ],
    ],
    "text": [
        ["generate-text", "grammar", "--n", "2", "--nfe", "8", "--seed", "1"],
    ],
    "train-toy": [
        [
            "train",
            "--preset",
            "moons",
            "--run-dir",
            "run",
            "--steps",
            "20",
            *TRAIN_COMMON,
            "--set",
            "data.size=512",
            "--set",
            "model.mlp.hidden=32",
            "--set",
            "model.mlp.depth=2",
            "--set",
            "train.batch_size=64",
            "--set",
            "train.ckpt_every=20",
            "--set",
            "train.sample_every=10",
            "--set",
            "sample.n=200",
            "--set",
            "sample.nfe=8",
        ],
        ["sample", "run", "--n", "50", "--nfe", "8", *EXPLICIT, "--out", "toy.npy"],
        ["sample", "run", "--n", "50", "--nfe", "8", *EXPLICIT, "--out", "toy.png"],
    ],
    "train-digits": [
        [
            "train",
            "--preset",
            "digits",
            "--run-dir",
            "run",
            "--steps",
            "4",
            *TRAIN_COMMON,
            "--set",
            "model.unet.preset=tiny",
            "--set",
            "train.batch_size=16",
            "--set",
            "train.ckpt_every=4",
            "--set",
            "train.sample_every=2",
            "--set",
            "sample.n=20",
            "--set",
            "sample.nfe=4",
            "--set",
            "sample.sampler=heun",
            "--set",
            "sample.schedule=karras",
        ],
        ["sample", "run", "--class", "5", "--n", "4", "--nfe", "4", "--out", "config-sampler.png"],
    ],
    "train-t2i": [
        [
            "train",
            "--preset",
            "t2i-scenes",
            "--run-dir",
            "run",
            *TRAIN_COMMON,
            "--set",
            "data.size=64",
            "--set",
            "model.dit.dim=32",
            "--set",
            "model.dit.depth=1",
            "--set",
            "model.dit.heads=2",
            "--set",
            "model.text_encoder.dim=16",
            "--set",
            "model.text_encoder.depth=1",
            "--set",
            "model.text_encoder.heads=2",
            "--set",
            "model.text_encoder.max_tokens=12",
            "--set",
            "train.batch_size=16",
            "--steps",
            "2",
            "--set",
            "train.ckpt_every=2",
            "--set",
            "train.sample_every=2",
            "--set",
            "sample.n=4",
            "--set",
            "sample.nfe=3",
        ],
    ],
    "train-t2i-latent": [
        [
            "train",
            "--preset",
            "t2i-scenes-latent",
            "--run-dir",
            "run",
            *TRAIN_COMMON,
            "--set",
            "data.size=32",
            "--set",
            "model.dit.dim=32",
            "--set",
            "model.dit.depth=1",
            "--set",
            "model.dit.heads=2",
            "--set",
            "model.text_encoder.dim=16",
            "--set",
            "model.text_encoder.depth=1",
            "--set",
            "model.text_encoder.heads=2",
            "--set",
            "model.text_encoder.max_tokens=12",
            "--set",
            "train.batch_size=8",
            "--steps",
            "2",
            "--set",
            "train.ckpt_every=2",
            "--set",
            "train.sample_every=2",
            "--set",
            "sample.n=2",
            "--set",
            "sample.nfe=3",
        ],
        [
            "generate",
            "a red circle",
            "--checkpoint",
            "run",
            "--n",
            "1",
            "--nfe",
            "3",
            *EXPLICIT,
            "--out",
            "g",
        ],
    ],
    "train-audio": [
        [
            "train",
            "--preset",
            "spoken-digits",
            "--run-dir",
            "run",
            *TRAIN_COMMON,
            "--data",
            "{tones}",
            "--set",
            "data.audio.seconds=0.25",
            "--set",
            "data.audio.n_mels=8",
            "--set",
            "model.unet.channels=8",
            "--set",
            "model.unet.channel_mult=[1,2]",
            "--set",
            "model.unet.attn_resolutions=[]",
            "--steps",
            "2",
            "--set",
            "train.batch_size=4",
            "--set",
            "train.ckpt_every=2",
            "--set",
            "train.sample_every=2",
            "--set",
            "optim.warmup_steps=1",
            "--set",
            "sample.nfe=3",
        ],
        ["generate-audio", "run", "--n", "1", "--nfe", "3", *EXPLICIT, "--out", "a"],
    ],
    "server": [["@server"]],
    "demo": [["demo", "--quick", "--out", "demo"]],
}
SLOW = {"demo", "train-toy", "train-digits", "train-t2i", "train-t2i-latent", "train-audio"}


def make_inputs(folder: Path) -> dict[str, str]:
    """Deterministic init images and masks (no randomness: closed-form gradients)."""
    import math

    import numpy as np
    import soundfile as sf
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:8, 0:8]
    Image.fromarray(((x * 32 + y * 4) % 256).astype(np.uint8), "L").save(folder / "init1.png")
    Image.fromarray(((x < 4) * 255).astype(np.uint8), "L").save(folder / "mask.png")
    y, x = np.mgrid[0:32, 0:32]
    rgb = np.stack([x * 8, y * 8, (x + y) * 4], -1).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(folder / "init3.png")
    Image.fromarray(((y >= 16) * 255).astype(np.uint8), "L").save(folder / "mask32.png")
    rate, n = 8000, 2000
    for k, freq in enumerate([300.0, 1200.0]):
        (folder / "tones" / f"{k}-tone").mkdir(parents=True, exist_ok=True)
        for i in range(4):
            t = np.arange(n) / rate
            wave = (0.3 + 0.1 * i) * np.sin(2 * math.pi * freq * t + i)
            sf.write(folder / "tones" / f"{k}-tone" / f"{i}.wav", wave.astype(np.float32), rate)
    return {
        "init1": str(folder / "init1.png"),
        "mask": str(folder / "mask.png"),
        "init3": str(folder / "init3.png"),
        "mask32": str(folder / "mask32.png"),
        "tones": str(folder / "tones"),
    }


SERVER_SCRIPT = r"""
import json, sys, threading, time, socket
from pathlib import Path
import httpx, uvicorn
from diffusionforge.assets import bundled_path
from diffusionforge.server.app import create_app
from diffusionforge.server.protocol import uvicorn_config
from diffusionforge.server.settings import Limits, ServerSettings

out = Path(sys.argv[1])
models = out / "models"
models.mkdir(parents=True, exist_ok=True)
for name in ("digits", "audio-digits", "grammar"):
    (models / name).symlink_to(bundled_path(name), target_is_directory=True)
import diffusionforge.assets as a
(models / "t2i-scenes").symlink_to(Path(a.__file__).parent / "t2i-scenes", target_is_directory=True)
app = create_app(ServerSettings(models_dir=models, limits=Limits()))
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]
server = uvicorn.Server(uvicorn_config(app, log_level="warning", timeout_graceful_shutdown=2))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
thread.start()
while not server.started:
    time.sleep(0.02)
client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300)
requests = [
    ("image", {"model": "digits", "n": 3, "nfe": 6, "seed": 4, "sampler": "heun",
               "schedule": "karras", "class": 2, "guidance": 2.0}),
    ("image", {"model": "digits", "n": 2, "nfe": 5}),
    ("text2image", {"model": "t2i-scenes", "prompt": "a red circle", "n": 2, "nfe": 3,
                    "seed": 9, "sampler": "euler", "schedule": "karras",
                    "negative_prompt": "blue", "guidance": 3.0}),
    ("audio", {"model": "audio-digits", "class": "three", "n": 1, "nfe": 4,
               "sampler": "heun", "schedule": "karras"}),
    ("text", {"model": "grammar", "n": 1, "nfe": 8, "seed": 2}),
]
for k, (kind, body) in enumerate(requests):
    r = client.post(f"/api/generate/{kind}?wait=true", json=body)
    job = r.json()
    (out / f"{k}-{kind}-status.txt").write_text(f"{r.status_code} {job.get('status')}\n")
    params = {key: v for key, v in job.get("params", {}).items()}
    (out / f"{k}-{kind}-params.json").write_text(json.dumps(params, sort_keys=True, indent=1))
    for j, o in enumerate(job.get("outputs", [])):
        ext = o["url"].rsplit(".", 1)[-1] if "." in o["url"].rsplit("/", 1)[-1] else "bin"
        (out / f"{k}-{kind}-{j}-{o['role']}.{ext}").write_bytes(client.get(o["url"]).content)
server.should_exit = True
thread.join(15)
"""


def run_case(name: str, tree: Path, dest: Path, inputs: dict[str, str]) -> None:
    """Run in one fixed folder (paths land in PNG metadata), then move the results to dest."""
    folder = dest.parent.parent / "work" / name
    for f in (folder, dest):
        if f.exists():
            shutil.rmtree(f)
    folder.mkdir(parents=True)
    env = dict(os.environ, PYTHONPATH=str(tree.resolve()), OMP_NUM_THREADS="1")
    env.pop("DIFFUSIONFORGE_CACHE", None)
    log = open(folder / "log.txt", "w")
    for k, argv in enumerate(CASES[name]):
        if argv == ["@server"]:
            cmd = [PY, "-c", SERVER_SCRIPT, str(folder)]
        else:
            cmd = [PY, "-m", "diffusionforge", *[a.format(**inputs) for a in argv]]
        proc = subprocess.run(cmd, cwd=folder, env=env, capture_output=True, text=True)
        (folder / f"cmd{k}.stdout.txt").write_text(proc.stdout.replace(str(folder), "<OUT>"))
        log.write(f"$ {' '.join(cmd)}\nrc={proc.returncode}\n{proc.stderr}\n")
    log.close()
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(dest)


TIMING = re.compile(r"(in |factor |took )\d+(\.\d+)?s?|\d+(\.\d+)?s (wall|cpu)")


def _strip_timings(value):
    """Drop measured durations (they differ run to run) from a JSON record."""
    words = ("network", "decode", "real_time", "seconds_wall", "elapsed", "cpu_s", "wall_s")
    if isinstance(value, dict):
        return {
            k: _strip_timings(v)
            for k, v in value.items()
            if not any(w in k for w in words) and k != "timings"
        }
    if isinstance(value, list):
        return [_strip_timings(v) for v in value]
    return value


TREES: list[str] = []  # the two trees' paths: bundled models' paths name them in metadata


def _untree(text: str) -> str:
    for tree in TREES:
        text = text.replace(tree, "<TREE>")
    return TIMING.sub("<t>", text)


def same(a: Path, b: Path) -> bool:
    """Equal bytes; or equal up to the tree's path and measured durations: JSON and text with
    those replaced, PNGs with equal pixels and equal text chunks (the path replaced)."""
    if filecmp.cmp(a, b, shallow=False):
        return True
    if a.suffix == ".json":
        try:
            ja, jb = (json.loads(_untree(f.read_text())) for f in (a, b))
        except ValueError:
            return False
        return _strip_timings(ja) == _strip_timings(jb)
    if a.suffix == ".txt":
        return _untree(a.read_text()) == _untree(b.read_text())
    if a.suffix == ".png":
        import numpy as np
        from PIL import Image

        with Image.open(a) as ia, Image.open(b) as ib:
            if not np.array_equal(np.asarray(ia), np.asarray(ib)):
                return False
            ta = {k: _untree(v) for k, v in ia.text.items()}
            return ta == {k: _untree(v) for k, v in ib.text.items()}
    return False


def differences(a: Path, b: Path) -> list[str]:
    skip = {"log.txt"}
    bad = []
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and not p.is_symlink()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and not p.is_symlink()}
    for rel in sorted(files_a ^ files_b):
        if "models" not in rel.parts and rel.name not in skip:
            bad.append(f"only in one: {rel}")
    for rel in sorted(files_a & files_b):
        if rel.name in skip or rel.suffix in (".log", ".jsonl") or "tensorboard" in rel.parts:
            continue
        if rel.name.endswith(".safetensors") or "training_state" in rel.parts:
            continue  # written by the same trainer; a preview does not touch them
        if rel.name == "manifest.json" and "checkpoints" in rel.parts:  # holds a write time
            continue  # written by the same trainer; a preview does not touch them
        if not same(a / rel, b / rel):
            bad.append(f"differs: {rel}")
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="tree to compare against (e.g. /tmp/base)")
    p.add_argument("--tree", default=".", help="tree under test")
    p.add_argument("--out", default="/tmp/same-bytes", help="scratch folder")
    p.add_argument("--only", action="append", help="case name (repeatable)")
    p.add_argument("--quick", action="store_true", help="skip the demo and training cases")
    p.add_argument("--reuse-base", action="store_true", help="keep base outputs already there")
    args = p.parse_args()
    names = args.only or [n for n in CASES if not (args.quick and n in SLOW)]
    out = Path(args.out).resolve()
    TREES.extend(str(Path(t).resolve()) for t in (args.base, args.tree))
    inputs = make_inputs(out / "inputs")
    failed = 0
    for name in names:
        base_dir, tree_dir = out / "base" / name, out / "tree" / name
        if not (args.reuse_base and base_dir.exists()):
            run_case(name, Path(args.base), base_dir, inputs)
        run_case(name, Path(args.tree), tree_dir, inputs)
        bad = differences(base_dir, tree_dir)
        n_files = sum(1 for f in tree_dir.rglob("*") if f.is_file())
        print(f"{name:18s} {'SAME' if not bad else 'DIFFERENT'} ({n_files} files)", flush=True)
        for line in bad:
            print(f"    {line}")
        failed += bool(bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
