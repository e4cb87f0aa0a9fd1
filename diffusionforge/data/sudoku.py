"""Procedurally generated 9x9 Sudoku as (prompt, response) pairs: a reasoning benchmark.

A grid is a string of 81 characters, row by row: digits 1-9, and "." for an empty cell (a blank).
The prompt of a pair is the puzzle, the response its (unique) solution, both 81 characters.

- `solve(grid, limit)`: every solution up to `limit` (exact search: bitmask candidates, the cell
  with the fewest candidates first); `count_solutions(grid) == 1` is what "unique" means here.
- `generate(rng, givens)`: a random full grid (the solver on an empty grid with shuffled digit
  orders), then cells are emptied in random order while the solution stays unique, until
  `givens` digits are left (or no further cell can be emptied: the puzzle keeps more).
- `transform(rng, puzzle, solution)`: one of the 9! * 6^8 * 2 validity-preserving symmetries
  (digit relabelling, permutations of rows within bands, of bands, of columns within stacks, of
  stacks, transposition): a puzzle's uniqueness and difficulty are kept, so a few hundred solved
  base puzzles make tens of thousands of training pairs cheaply.
- `puzzles(n_bases, per_base, seed, min_givens, max_givens)`: pairs from `n_bases` base puzzles
  (each from its own seed), `per_base` symmetric variants each. The training and held-out sets
  are made from disjoint base seeds (`split_seeds`), so no held-out puzzle is a variant of a
  training one.
- `grids(n, per_grid, seed)`: full solution grids for the infilling formulation (format "grid":
  the model learns complete grids and fills a puzzle's blanks with its givens fixed): `n` random
  grids from the training seed domain, `per_grid` symmetric variants each. No puzzle is dug out,
  so this is cheap (about 1 ms a grid).
"""

from __future__ import annotations

import random
import re

DIGITS = "123456789"
BLANK = "."
_BOX = [(r // 3) * 3 + c // 3 for r in range(9) for c in range(9)]
ALL = 0x3FE  # bits 1..9


def parse_grid(text: str) -> str:
    """Normalise a typed grid: whitespace and | - + separators are dropped, 0 and _ are blanks.
    Raises ValueError unless 81 cells of 1-9 or . remain."""
    cells = re.sub(r"[\s|+\-]", "", text).replace("0", BLANK).replace("_", BLANK)
    bad = set(cells) - set(DIGITS + BLANK)
    if bad:
        raise ValueError(f"a Sudoku grid holds digits 1-9 and . for blanks, not {min(bad)!r}")
    if len(cells) != 81:
        raise ValueError(f"a Sudoku grid has 81 cells, got {len(cells)}")
    return cells


def _state(grid: str) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """Cell digits (0 blank) and the used-digit bitmasks of rows, columns and boxes; None when
    two givens clash."""
    cells = [0 if ch == BLANK else int(ch) for ch in grid]
    rows, cols, boxes = [0] * 9, [0] * 9, [0] * 9
    for i, d in enumerate(cells):
        if d:
            bit, r, c, b = 1 << d, i // 9, i % 9, _BOX[i]
            if (rows[r] | cols[c] | boxes[b]) & bit:
                return None
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
    return cells, rows, cols, boxes


def solve(grid: str, limit: int = 2, rng: random.Random | None = None) -> list[str]:
    """Up to `limit` solutions of `grid` (81 characters), found by exact search. With `rng` the
    digits of each cell are tried in random order (used to draw random full grids)."""
    state = _state(grid)
    if state is None:
        return []
    cells, rows, cols, boxes = state
    empties = [i for i in range(81) if not cells[i]]
    found: list[str] = []

    def search() -> None:
        best, best_count, best_cand = -1, 10, 0
        for i in empties:
            if cells[i]:
                continue
            cand = ALL & ~(rows[i // 9] | cols[i % 9] | boxes[_BOX[i]])
            count = bin(cand).count("1")
            if count < best_count:
                best, best_count, best_cand = i, count, cand
                if count <= 1:
                    break
        if best < 0:
            found.append("".join(map(str, cells)))
            return
        if best_count == 0:
            return
        digits = [d for d in range(1, 10) if best_cand >> d & 1]
        if rng is not None:
            rng.shuffle(digits)
        r, c, b = best // 9, best % 9, _BOX[best]
        for d in digits:
            bit = 1 << d
            cells[best] = d
            rows[r] |= bit
            cols[c] |= bit
            boxes[b] |= bit
            search()
            rows[r] &= ~bit
            cols[c] &= ~bit
            boxes[b] &= ~bit
            cells[best] = 0
            if len(found) >= limit:
                return

    search()
    return found


def count_solutions(grid: str, limit: int = 2) -> int:
    return len(solve(grid, limit))


def is_solution(puzzle: str, answer: str) -> bool:
    """True when `answer` is a complete valid grid that keeps every given of `puzzle`."""
    if len(answer) != 81 or any(ch not in DIGITS for ch in answer):
        return False
    if any(p != BLANK and p != a for p, a in zip(puzzle, answer, strict=True)):
        return False
    return _state(answer) is not None


def generate(rng: random.Random, givens: int) -> tuple[str, str]:
    """(puzzle, solution): a random full grid emptied in random order while the solution stays
    unique, down to `givens` digits (more when no further cell can be emptied)."""
    solution = solve(BLANK * 81, 1, rng)[0]
    cells = list(solution)
    left = 81
    order = list(range(81))
    rng.shuffle(order)
    for i in order:
        if left <= givens:
            break
        cells[i] = BLANK
        if count_solutions("".join(cells)) != 1:
            cells[i] = solution[i]
        else:
            left -= 1
    return "".join(cells), solution


def transform(rng: random.Random, *grids: str) -> tuple[str, ...]:
    """The same random Sudoku symmetry applied to each grid (puzzle and solution alike)."""
    relabel = list(DIGITS)
    rng.shuffle(relabel)
    label = dict(zip(DIGITS, relabel, strict=True)) | {BLANK: BLANK}

    def lines() -> list[int]:  # a permutation of 0..8 that keeps the bands (or stacks)
        bands = [0, 1, 2]
        rng.shuffle(bands)
        out = []
        for band in bands:
            inner = [0, 1, 2]
            rng.shuffle(inner)
            out += [band * 3 + k for k in inner]
        return out

    rows, cols, flip = lines(), lines(), rng.random() < 0.5
    out = []
    for g in grids:
        cell = [[g[r * 9 + c] for c in cols] for r in rows]
        if flip:
            cell = [list(col) for col in zip(*cell, strict=True)]
        out.append("".join(label[ch] for row in cell for ch in row))
    return tuple(out)


def split_seeds(seed: int, heldout: bool) -> int:
    """The seed domain of the training (False) or held-out (True) base puzzles: disjoint."""
    return seed * 2 + (1 if heldout else 0)


def puzzles(
    n_bases: int,
    per_base: int,
    seed: int,
    min_givens: int = 25,
    max_givens: int = 35,
    heldout: bool = False,
) -> list[tuple[str, str]]:
    """(puzzle, solution) pairs: `n_bases` unique-solution base puzzles, each with a target
    number of givens drawn uniformly from [min_givens, max_givens], times `per_base` random
    symmetric variants (the first variant of each base is the base itself)."""
    if not 17 <= min_givens <= max_givens <= 80:
        raise ValueError(f"givens: expected 17 <= min <= max <= 80, got {min_givens}..{max_givens}")
    out = []
    for k in range(n_bases):
        rng = random.Random(f"sudoku/{split_seeds(seed, heldout)}/{k}")
        puzzle, solution = generate(rng, rng.randint(min_givens, max_givens))
        out.append((puzzle, solution))
        out += [transform(rng, puzzle, solution) for _ in range(per_base - 1)]
    return out


def grids(n: int, per_grid: int, seed: int) -> list[str]:
    """`n` random full grids (training seed domain), each with `per_grid` - 1 symmetric variants
    after it."""
    out = []
    for k in range(n):
        rng = random.Random(f"sudoku-grid/{split_seeds(seed, False)}/{k}")
        grid = solve(BLANK * 81, 1, rng)[0]
        out.append(grid)
        out += [transform(rng, grid)[0] for _ in range(per_grid - 1)]
    return out


def givens(puzzle: str) -> int:
    return sum(ch != BLANK for ch in puzzle)
