"""A text corpus as a language model's samples (PROTOCOL.md §4, "Text corpus").

Tokens are bytes (vocabulary 256; no tokenizer, nothing downloaded). A corpus is a file's bytes, or
a folder's: every regular file under it, at any depth (symbolic links to files are read, links to
folders are not followed), in the order of their paths relative to the folder, ``/``-separated, as
bytes; concatenated with nothing between them. Window ``i`` is tokens ``i * context`` to
``i * context + context`` inclusive: consecutive windows share one token, so every token but the
first is predicted exactly once, and a last partial window is left out.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from veritrain.pipeline.errors import SpecError
from veritrain.prover import text_windows

VOCAB_SIZE = 256


def corpus_files(folder: Path) -> list[Path]:
    """A folder's files in corpus order."""
    found = [
        Path(top, name)
        for top, _, names in os.walk(folder)  # links to folders are not followed
        for name in names
        if os.path.isfile(os.path.join(top, name))
    ]
    return sorted(found, key=lambda p: os.fsencode(p.relative_to(folder).as_posix()))


def read_corpus(path: Path) -> bytes:
    """The corpus's bytes; SpecError naming ``dataset.path`` where it cannot be read or holds no
    byte."""
    try:
        if path.is_dir():
            files = corpus_files(path)
            data = b"".join(f.read_bytes() for f in files)
            where = f"{path}: the text corpus ({len(files)} file{'s' * (len(files) != 1)})"
        else:
            data = path.read_bytes()
            where = f"{path}: the text corpus"
    except OSError as e:
        name = e.filename or path
        raise SpecError(
            f"dataset.path: {name}: cannot read the corpus: {e.strerror or e}"
        ) from None
    if not data:
        raise SpecError(f"dataset.path: {where} is empty")
    return data


def load_text(path: Path, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next tokens) of every window, each of shape (windows, context): views of one
    array of the corpus's tokens, nothing copied (writeable as torch.from_numpy wants them; no
    one writes them)."""
    data = read_corpus(path)
    n = text_windows(len(data), context)
    if n == 0:
        raise SpecError(
            f"dataset.context: a window of {context} + 1 tokens is longer than the corpus "
            f"{path} ({len(data)} tokens)"
        )
    tokens = np.frombuffer(bytearray(data), dtype=np.uint8)
    windows = np.lib.stride_tricks.as_strided(tokens, shape=(n, context + 1), strides=(context, 1))
    return windows[:, :-1], windows[:, 1:]
